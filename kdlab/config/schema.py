"""The single typed schema of a kdlab experiment.

Every key a YAML config or a ``key.sub=value`` override may set is a field
below, documented once here. Validation errors (unknown key, wrong type,
value out of range) are produced from this schema by
:mod:`kdlab.config.loader`, so adding a key needs no new error code.

Range and choice constraints live in ``field(metadata=...)``:
``choices`` (allowed values), ``min`` / ``max`` (inclusive bounds), ``exclusive_min`` (the value must
be greater), ``min_items`` / ``max_items`` (list lengths; the bounds then apply to each item) and
``duration`` (a time such as ``3h50m``, > 0). Every integer must fit in 64 bits (:data:`INT_MIN` ..
:data:`INT_MAX`) unless its field bounds it tighter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union


#: the bounds every integer key lives in unless its field sets tighter ones: torch and numpy take no wider int
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: the largest seed: scikit-learn's random_state (the t-SNE / PCA of eval.manifold gets trainer.seed) is a
#: numpy RandomState seed, which must be < 2**32; torch.manual_seed would take up to 2**64 - 1
SEED_MAX = 2**32 - 1
#: the largest image side a config may ask for (data.image_size, synthetic_size, crop_padding): far above
#: the 224 of the largest shipped recipes (ImageNet); one 4096 x 4096 RGB image is already 48 MiB as uint8
#: and 192 MiB as float32, so a larger value is a typo, not a resolution
IMAGE_SIDE_MAX = 4096


def _choices(*values: str, doc: str = "") -> dict[str, Any]:
    return {"choices": values, "doc": doc}


@dataclass
class TrainerConfig:
    """How the one trainer runs."""

    epochs: int = field(default=10, metadata={"min": 1, "doc": "number of training epochs"})
    out_dir: str = field(default="runs/default", metadata={"doc": "run folder (config, metrics, checkpoints)"})
    seed: int = field(
        default=0,
        metadata={"min": 0, "max": SEED_MAX, "doc": "seeds init, data order and augmentation (0 .. 2**32 - 1: "
                                                     "numpy's, and so scikit-learn's, seed range)"},
    )
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda", doc="auto picks CUDA when present"))
    stop_after_steps: Optional[int] = field(
        default=None,
        metadata={"min": 1, "doc": "stop cleanly after N optimizer steps with a resumable checkpoint (as if preempted)"},
    )
    time_limit: Optional[str] = field(
        default=None,
        metadata={"duration": True, "doc": "wall-clock budget such as '3h50m', '90m', '45s' or seconds (> 0); "
                                           "stop cleanly before it runs out; null: no limit"},
    )
    precision: str = field(
        default="fp32", metadata=_choices("fp32", "bf16", doc="bf16 autocast (CUDA; CPU when supported); losses in fp32")
    )
    channels_last: Optional[bool] = field(
        default=None,
        metadata={"doc": "channels_last memory format for the networks and images (default null: on, the faster "
                         "layout for convolutions with oneDNN on CPUs and tensor cores on GPUs)"},
    )
    compile: bool = field(default=False, metadata={"doc": "torch.compile the student"})
    log_every: int = field(default=50, metadata={"min": 1, "doc": "steps between logged training-loss readings"})
    eval_every: int = field(default=1, metadata={"min": 1, "doc": "epochs between evaluations (last epoch always)"})
    keep_last: int = field(default=1, metadata={"min": 1, "doc": "number of recent epoch checkpoints to keep"})
    best_metric: str = field(default="val_top1", metadata={"doc": "metrics.jsonl key that selects best.pt (higher is better)"})
    progress: str = field(
        default="auto", metadata=_choices("auto", "bar", "lines", "none", doc="tqdm bar on a terminal, else lines")
    )
    sync_batchnorm: bool = field(default=False, metadata={"doc": "convert BatchNorm to SyncBatchNorm under DDP"})
    finite_check: str = field(
        default="auto",
        metadata=_choices(
            "auto", "step", "deferred",
            doc="NaN/Inf guard: step reads a flag before every optimizer step; deferred skips bad steps on the "
            "device and reads every log_every steps (no per-step host sync); auto: deferred on CUDA",
        ),
    )
    num_threads: Optional[int] = field(
        default=None,
        metadata={"min": 1, "max": 4096, "doc": "CPU threads of torch (default: torch's); 1 is fastest for tiny "
                                                "models on busy CPUs (at most 4096; torch takes a 32-bit count)"},
    )


@dataclass
class OptimConfig:
    """Optimizer of the student and the method's trainable modules."""

    name: str = field(default="sgd", metadata=_choices("sgd", "adamw"))
    lr: float = field(default=0.05, metadata={"exclusive_min": 0.0, "doc": "base learning rate (> 0)"})
    momentum: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0})
    weight_decay: float = field(default=5e-4, metadata={"min": 0.0})
    nesterov: bool = field(default=False, metadata={"doc": "Nesterov momentum (sgd; needs optim.momentum > 0)"})

    def __post_init__(self) -> None:
        if self.name == "sgd" and self.nesterov is True and isinstance(self.momentum, (int, float)) \
                and not self.momentum > 0:
            # torch.optim.SGD refuses this pair only when the optimizer is built, after the data and models
            raise _config_error(
                "optim.nesterov=true needs optim.momentum > 0 (Nesterov momentum), "
                f"got optim.momentum={self.momentum!r}"
            )


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped per optimizer step (epoch-fractional)."""

    name: str = field(default="step", metadata=_choices("step", "cosine", "constant"))
    milestones: list[int] = field(
        default_factory=lambda: [150, 180, 210], metadata={"min": 0, "doc": "epochs (>= 0) where lr *= gamma"}
    )
    gamma: float = field(default=0.1, metadata={"min": 0.0})
    warmup_epochs: float = field(default=0.0, metadata={"min": 0.0, "doc": "linear warm-up from 0 over these epochs"})
    min_lr: float = field(default=0.0, metadata={"min": 0.0, "doc": "cosine floor"})


def _config_error(message: str) -> Exception:
    from kdlab.config.loader import ConfigError  # loader imports this module: import when needed

    return ConfigError(message)


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _per_class_value(value: Any) -> Optional[Union[int, float]]:
    """``data.per_class`` checked: None, an int count >= 1 or a float fraction in (0, 1] (numeric text parsed)."""
    key = "data.per_class"
    expected = "an integer count >= 1 or a fraction in (0, 1]"
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise _config_error(f"{key} must be {expected}, got {_show(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _config_error(f"{key} must be {expected}, got {_show(value)}")
    if isinstance(value, int):
        if value > INT_MAX:
            raise _config_error(f"{key}={value if value.bit_length() <= 128 else '<a huge integer>'} is out of "
                                f"range: must be <= {INT_MAX}")
        if value < 1:
            raise _config_error(f"{key}={value} is out of range: a count must be >= 1 (or a fraction in (0, 1])")
        return value
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        hint = f"; write {int(value)} (no decimal point) for a count" if math.isfinite(value) and value.is_integer() \
            and value > 1 else ""
        raise _config_error(f"{key}={value!r} is out of range: a fraction must be in (0, 1]{hint}")
    return float(value)


def _number_text_hint(value: Any) -> str:
    """A hint for text that reads as a number: YAML 1.1 reads ``1e-3`` (no dot, unsigned exponent) as a string."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return " (YAML reads it as text: write the number with a dot and a signed exponent, e.g. 1.0e-3, or 0.001)"
    return ""


def _check_term_shape(where: str, term: Any) -> None:
    """The generic keys of one ``distill.terms`` entry: a mapping, ``name`` a non-empty string, ``weight`` >= 0.

    ``key`` (when given) is a non-empty string. Whether the name is a loss term, and the term's own
    parameters, are checked where the terms are built (``kdlab.methods.build``), which knows the registry.
    """
    if not isinstance(term, dict):
        raise _config_error(f"{where} must be a mapping with a name, e.g. {{name: kd, weight: 0.9}}; got {_show(term)}")
    if "name" not in term:
        raise _config_error(f"{where} has no name: each term is a mapping like {{name: kd, weight: 0.9}}")
    name = term["name"]
    if not isinstance(name, str) or not name.strip():
        raise _config_error(f"{where}.name must be a non-empty string (a loss term, see `kdlab list-methods`), "
                            f"got {_show(name)}")
    if "weight" in term:
        weight = term["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise _config_error(f"{where}.weight must be a number >= 0, got {_show(weight)}{_number_text_hint(weight)}")
        try:
            finite = math.isfinite(weight)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise _config_error(f"{where}.weight must be a finite number, got {_show(weight)}")
        if weight < 0:
            raise _config_error(f"{where}.weight={weight!r} is out of range: must be >= 0")
    if "key" in term and (not isinstance(term["key"], str) or not term["key"]):
        raise _config_error(f"{where}.key must be a non-empty string, got {_show(term['key'])}")


@dataclass
class LabelNoiseConfig:
    """``data.label_noise``: symmetric noise on the training labels (never on evaluation labels).

    ``round(rate * N)`` (halves up) of the N training labels, chosen by ``seed`` alone, are each replaced by a
    class drawn uniformly from the other classes. The same labels for every ``trainer.seed`` and every method.
    """

    rate: Optional[float] = field(
        default=None,
        metadata={"min": 0.0, "doc": "fraction in [0, 1) of training labels replaced by a different class "
                                     "(null or 0: no noise)"},
    )
    seed: Optional[int] = field(
        default=None, metadata={"min": 0, "max": SEED_MAX, "doc": "fixes which labels change and to what (default "
                                                                  "null: 0); independent of trainer.seed"},
    )

    def __post_init__(self) -> None:
        if isinstance(self.rate, (int, float)) and not isinstance(self.rate, bool) and not self.rate < 1.0:
            raise _config_error(
                f"data.label_noise.rate={self.rate!r} is out of range: must be < 1 (the fraction of training "
                "labels replaced by a different class)"
            )


@dataclass
class DataConfig:
    """Where images come from and how they are batched and augmented."""

    name: str = field(
        default="digits",
        metadata=_choices(
            "digits", "cifar10", "cifar100", "imagefolder", "synthetic", "coco", "voc",
            doc="coco and voc are detection datasets (task: detection)",
        ),
    )
    root: Optional[str] = field(default=None, metadata={"doc": "dataset folder or .zip (imagefolder)"})
    download: bool = field(default=False, metadata={"doc": "allow torchvision to download CIFAR (never in tests)"})
    batch_size: int = field(default=64, metadata={"min": 1, "doc": "global training batch (images, before views)"})
    eval_batch_size: int = field(default=256, metadata={"min": 1})
    num_workers: int = field(
        default=2, metadata={"min": 0, "max": 1024, "doc": "DataLoader workers of the standard path (processes; "
                                                         "at most 1024)"}
    )
    subset: Optional[int] = field(default=None, metadata={"min": 1, "doc": "use a fixed random subset of N training samples (same for every seed)"})
    per_class: Optional[Union[int, float]] = field(
        default=None,
        metadata={"doc": "keep a fixed, class-balanced part of the training images: an integer N (N images of "
                         "each class) or a fraction f in (0, 1] (round(f x the class's count), at least 1); the same "
                         "for every seed; applied to the data.subset images when both are set; a class with fewer "
                         "than N images is an error; evaluation is never subsampled"},
    )
    label_noise: LabelNoiseConfig = field(
        default_factory=LabelNoiseConfig,
        metadata={"doc": "{rate: 0.3, seed: 0}: replace that fraction of training labels by a different class"},
    )
    pipeline: str = field(
        default="auto", metadata=_choices("auto", "fast", "standard", doc="fast: uint8 in memory, batched aug")
    )
    cache_dir: Optional[str] = field(default=None, metadata={"doc": "fast-path cache folder (default: user cache)"})
    on_corrupt: str = field(default="error", metadata=_choices("error", "skip"))
    augment: str = field(
        default="crop_flip",
        metadata=_choices(
            "none", "crop", "flip", "crop_flip", "random_resized_crop", "mocov2", doc="training augmentation"
        ),
    )
    crop_padding: int = field(
        default=4, metadata={"min": 0, "max": IMAGE_SIDE_MAX, "doc": "pixels of padding before the random crop"}
    )
    image_size: Optional[int] = field(
        default=None,
        metadata={"min": 1, "max": IMAGE_SIDE_MAX, "doc": "train/eval resolution (default: native); at most 4096 "
                  "(recipes use up to 224; one 4096^2 RGB image is 192 MiB as float32)"},
    )
    views: str = field(
        default="single",
        metadata=_choices(
            "single", "rotate4", "multi", "weak_strong",
            doc="rotate4: SSKD's 4 rotated views; weak_strong: MLKD's crop/flip view + RandAugment/Cutout view",
        ),
    )
    num_views: int = field(default=1, metadata={"min": 1, "doc": "augmented views per image when views=multi"})
    mean: Optional[list[float]] = field(
        default=None, metadata={"min_items": 1, "doc": "normalisation mean per channel (default: dataset's)"}
    )
    std: Optional[list[float]] = field(
        default=None,
        metadata={"min_items": 1, "exclusive_min": 0.0, "doc": "normalisation std per channel, each > 0 (images are "
                                                               "divided by it; default: dataset's)"},
    )
    sampler: str = field(default="random", metadata=_choices("random", "knn", doc="knn: CoSS teacher-neighbour batches"))
    knn_index: Optional[str] = field(default=None, metadata={"doc": "neighbour file for sampler=knn"})
    knn_anchors: int = field(
        default=16, metadata={"min": 1, "doc": "anchors per global batch; batch_size = anchors x (1 + knn_neighbours)"}
    )
    knn_neighbours: int = field(default=15, metadata={"min": 0, "doc": "neighbours drawn per anchor"})
    knn_pool: int = field(default=31, metadata={"min": 1, "doc": "neighbours are drawn from the top knn_pool"})
    synthetic_train: int = field(default=512, metadata={"min": 1})
    synthetic_test: int = field(default=128, metadata={"min": 1})
    synthetic_classes: int = field(default=10, metadata={"min": 2})
    synthetic_size: int = field(default=32, metadata={"min": 4, "max": IMAGE_SIDE_MAX})
    train_images: Optional[str] = field(
        default=None, metadata={"doc": "coco: training image folder (or .zip) relative to data.root (default train2017)"}
    )
    train_annotations: Optional[str] = field(
        default=None,
        metadata={"doc": "coco: training instances JSON relative to data.root "
                         "(default annotations/instances_train2017.json)"},
    )
    eval_images: Optional[str] = field(
        default=None, metadata={"doc": "coco: evaluation image folder (or .zip) relative to data.root (default val2017)"}
    )
    eval_annotations: Optional[str] = field(
        default=None,
        metadata={"doc": "coco: evaluation instances JSON relative to data.root "
                         "(default annotations/instances_val2017.json)"},
    )
    train_split: str = field(default="trainval", metadata={"doc": "voc: ImageSets/Main/<split>.txt of training"})
    eval_split: str = field(default="test", metadata={"doc": "voc: ImageSets/Main/<split>.txt of evaluation"})
    classes: Optional[list[str]] = field(
        default=None, metadata={"doc": "voc: the class names in label order (default: sorted names found in the XMLs)"}
    )
    scale_jitter: Optional[list[float]] = field(
        default=None,
        metadata={"doc": "detection: [low, high] random rescale of training images (then cropped or padded back "
                         "to their size), boxes moved with them; null: off"},
    )

    def __post_init__(self) -> None:
        self.per_class = _per_class_value(self.per_class)


@dataclass
class ModelConfig:
    """The network being trained (the student when distilling)."""

    name: str = field(default="resnet8", metadata={"doc": "registry name, tv:<name> or timm:<name>"})
    num_classes: Optional[int] = field(default=None, metadata={"min": 1, "doc": "default: the dataset's"})
    checkpoint: Optional[str] = None
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"doc": "extra create_model arguments"})
    frozen: bool = field(
        default=False, metadata={"doc": "keep this network fixed (eval mode, no gradients); only method modules train"}
    )


@dataclass
class TeacherConfig:
    """The frozen teacher (only for distillation)."""

    name: Optional[str] = field(default=None, metadata={"doc": "registry name; None: no teacher"})
    checkpoint: Optional[str] = field(default=None, metadata={"doc": "weights file or a kdlab run folder"})
    num_classes: Optional[int] = field(default=None, metadata={"min": 1})
    kwargs: dict[str, Any] = field(default_factory=dict)
    mean: Optional[list[float]] = field(
        default=None, metadata={"min_items": 1, "doc": "input mean the teacher was trained with"}
    )
    std: Optional[list[float]] = field(
        default=None,
        metadata={"min_items": 1, "exclusive_min": 0.0, "doc": "input std the teacher was trained with (each > 0)"},
    )
    embedding_only: bool = field(default=False, metadata={"doc": "use the pooled embedding, classifier removed"})
    fold_batchnorm: bool = field(
        default=True,
        metadata={"doc": "run a copy with each conv -> BatchNorm folded into the conv (checked on the first batch)"},
    )
    compile: bool = field(default=False, metadata={"doc": "torch.compile the teacher's forward"})
    precision: Optional[str] = field(
        default=None,
        metadata=_choices(
            "fp32", "bf16",
            doc="the teacher forward's precision (default null: trainer.precision); bf16 with an fp32 student "
            "gives fp32-trained students targets within bf16 rounding at bf16 teacher speed; outputs are fp32",
        ),
    )


@dataclass
class TeacherEntry(TeacherConfig):
    """One of several teachers (``teachers:``): every ``teacher.*`` key, plus its weight in ``teacher: mean``."""

    weight: Optional[float] = field(
        default=None,
        metadata={"min": 0.0, "doc": "share in the logits of `teacher: mean` terms (normalised to sum 1; "
                                     "default: equal shares; set every teacher's or none)"},
    )


@dataclass
class DistillConfig:
    """Loss terms and how they see the data."""

    terms: list[dict[str, Any]] = field(
        default_factory=lambda: [{"name": "ce", "weight": 1.0}],
        metadata={"doc": "loss terms: [{name: ce, weight: 1.0}, {name: kd, weight: 0.9, temperature: 4}]; each a "
                         "mapping with a name, a weight >= 0 (default 1); the term's own keys are checked when the "
                         "terms are built (kdlab.methods.build)"},
    )
    labels: bool = field(default=True, metadata={"doc": "false: label-free (unsupervised) distillation"})
    gather: bool = field(default=False, metadata={"doc": "batch-dependent terms gather across DDP ranks"})
    teacher_cache: Optional[str] = field(default=None, metadata={"doc": "teacher-output cache folder"})
    teacher_cache_epochs: Optional[int] = field(
        default=None, metadata={"min": 1, "doc": "epochs a missing cache is built for (default: trainer.epochs)"}
    )
    teacher_cache_top_k: Optional[int] = field(
        default=None, metadata={"min": 0, "doc": "cache top-k logits (0: full logits; default: full up to 100 classes)"}
    )
    teacher_cache_dtype: str = field(
        default="float16", metadata=_choices("float16", "float32", doc="float32: exact replay of a live run")
    )
    head_hidden: int = field(default=2048, metadata={"min": 1, "doc": "hidden width of the student projection head"})

    def __post_init__(self) -> None:
        if isinstance(self.terms, list):
            for i, term in enumerate(self.terms):
                _check_term_shape(f"distill.terms[{i}]", term)


@dataclass
class EvalConfig:
    """What is measured after training / by `kdlab eval`."""

    knn: bool = field(default=False, metadata={"doc": "weighted kNN accuracy on frozen embeddings"})
    knn_k: list[int] = field(
        default_factory=lambda: [10, 20, 200],
        metadata={"min_items": 1, "min": 1, "doc": "neighbour counts of kNN accuracy (each >= 1; the first is the "
                                                   "one of label-free training's evaluation)"},
    )
    knn_temperature: float = field(
        default=0.07, metadata={"exclusive_min": 0.0, "doc": "softmax temperature of the neighbours' votes (> 0)"}
    )
    linear_probe: bool = False
    probe_method: str = field(default="lbfgs", metadata=_choices("lbfgs", "sgd"))
    probe_epochs: int = field(default=100, metadata={"min": 1})
    probe_lr: float = field(
        default=30.0, metadata={"exclusive_min": 0.0, "doc": "learning rate of the sgd probe (> 0)"}
    )
    probe_milestones: list[int] = field(default_factory=lambda: [60, 80], metadata={"min": 0})
    manifold: bool = False


WANDB_KEYS = ("project", "name", "mode")
WANDB_MODES = ("offline", "online")


def _wandb_text(key: str, value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a number-like YAML value, as the loader reads any string key
    if not isinstance(value, str) or not value.strip():
        raise _config_error(f"{key} must be a non-empty string, got {_show(value)}")
    return value


def _wandb_settings(value: Optional[dict[str, Any]]) -> dict[str, Any]:
    """``logging.wandb`` checked: empty (off), or {project, name (default null), mode (default offline)}.

    A mapping rather than a nested dataclass: the default (empty) adds no key to a flattened config,
    so resumed runs and the digests of prerequisite runs (SSKD's head, FSP/AB/FT's stages) stay as
    they were before this key existed.
    """
    if not value:
        return {}
    unknown = [k for k in value if k not in WANDB_KEYS]
    if unknown:
        raise _config_error(
            f"unknown config key logging.wandb.{unknown[0]} (logging.wandb takes {', '.join(WANDB_KEYS)})"
        )
    if value.get("project") is None:
        raise _config_error("logging.wandb.project is required when logging.wandb is set (the W&B project)")
    mode = value.get("mode")
    mode = "offline" if mode is None else mode
    if mode not in WANDB_MODES:
        raise _config_error(f"logging.wandb.mode={mode!r} is not one of {', '.join(WANDB_MODES)}")
    name = value.get("name")
    return {
        "project": _wandb_text("logging.wandb.project", value["project"]),
        "name": None if name is None else _wandb_text("logging.wandb.name", name),
        "mode": mode,
    }


@dataclass
class LoggingConfig:
    """Where a run's numbers go besides metrics.jsonl (docs/logging.md); only rank 0 writes."""

    tensorboard: bool = field(
        default=False,
        metadata={"doc": "TensorBoard event files in RUN_DIR/tensorboard: train/<term>, train/loss, train/lr every "
                         "trainer.log_every steps and epoch/<key> for each metrics.jsonl value "
                         "(pip install 'kdlab[tensorboard]')"},
    )
    csv: bool = field(
        default=False, metadata={"doc": "metrics.csv beside metrics.jsonl: the same rows, a column per key"}
    )
    wandb: Optional[dict[str, Any]] = field(
        default_factory=dict,
        metadata={"doc": "Weights & Biases: {project: P, name: N, mode: offline|online} (name default: the run "
                         "folder's name; mode default: offline); empty or null: off (pip install 'kdlab[wandb]')"},
    )

    def __post_init__(self) -> None:
        self.wandb = _wandb_settings(self.wandb)


@dataclass
class Config:
    """A whole experiment."""

    task: str = field(
        default="classification",
        metadata=_choices(
            "classification", "detection",
            doc="what is learned; detection defaults data.augment=flip, trainer.best_metric=val_map and "
            "distill.terms=[{name: det}] where the config does not set them",
        ),
    )
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # a mapping (empty by default) rather than a list: an empty mapping adds no key to a flattened config, so
    # single-teacher runs resume, and hash (SSKD's head digest), exactly as before this key existed
    teachers: Union[dict[str, Any], list[Any]] = field(
        default_factory=dict,
        metadata={"doc": "several frozen teachers instead of `teacher`: a mapping {KEY: {name, checkpoint, weight, "
                         "...every teacher.* key}} or a list [{key, name, checkpoint, weight, ...}] (key default: the "
                         "name); a loss term picks one with `teacher: KEY` or `teacher: INDEX`, or the weighted mean "
                         "of their logits with `teacher: mean` (docs/multi_teacher.md)"},
    )
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    description: str = field(default="", metadata={"doc": "free text shown in reports"})

    def __post_init__(self) -> None:
        from kdlab.config.teacher_source import checked_teachers  # it imports the loader, which imports this

        self.teachers = checked_teachers(self)
