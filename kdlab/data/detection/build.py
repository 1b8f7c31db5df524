"""``build_detection_data``: COCO or VOC files -> the streams and facts a detection run needs."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from kdlab.data.decisions import subset_selection
from kdlab.data.detection.augment import DetectionAugment
from kdlab.data.detection.containers import ImageContainer, find_container
from kdlab.data.detection.coco import read_coco
from kdlab.data.detection.records import DetectionSplit
from kdlab.data.detection.streams import DetectionEvalStream, DetectionImages, DetectionTrainStream, pil_to_uint8
from kdlab.data.detection.voc import class_names, read_voc, split_ids
from kdlab.data.errors import DataError
from kdlab.data.planners import RandomBatchPlanner, rank_columns

logger = logging.getLogger("kdlab.data")

COCO_DEFAULTS = {
    "train_images": "train2017",
    "train_annotations": "annotations/instances_train2017.json",
    "eval_images": "val2017",
    "eval_annotations": "annotations/instances_val2017.json",
}
#: below this many decoded bytes (train + eval) the images are decoded once and kept in memory
IN_MEMORY_BYTES = 512 * 2**20
SKIPPED_SHOWN = 5
#: splits of fewer images decode in about a second: no progress bar
PROGRESS_FROM = 2000


@dataclass
class DetectionDataBundle:
    """Everything the trainer needs to know about the data of a detection run."""

    train: DetectionTrainStream
    eval: DetectionEvalStream
    num_classes: int  # K object classes, background not counted
    classes: list[str]  # label l in 1..K is classes[l - 1]
    category_ids: list[int]  # label l is the annotation file's category category_ids[l - 1]
    in_chans: int
    image_size: int  # the largest image side of the data
    min_image_side: int  # the smallest image side of the data
    train_size: int
    fingerprint: str
    eval_ground_truth: dict  # COCO-format ground truth of the whole evaluation split (all ranks)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


def _check_keys(cfg: Any) -> None:
    """Keys of the classification pipeline that mean nothing here are refused, naming the key."""
    if cfg.augment not in ("none", "flip"):
        raise DataError(f"data.augment={cfg.augment} is not a detection augmentation: use flip or none "
                        "(and data.scale_jitter for rescaling)")
    for key, value, default in (("data.image_size", cfg.image_size, None), ("data.mean", cfg.mean, None),
                                ("data.std", cfg.std, None), ("data.views", cfg.views, "single"),
                                ("data.sampler", cfg.sampler, "random"), ("data.pipeline", cfg.pipeline, "auto")):
        if value != default:
            raise DataError(f"{key}={value} is not used for detection (the detector resizes and normalises its "
                            "input: model.kwargs min_size, max_size, image_mean, image_std)")
    noise = getattr(getattr(cfg, "label_noise", None), "rate", None)
    for key, value in (("data.per_class", getattr(cfg, "per_class", None)), ("data.label_noise.rate", noise)):
        if value:
            raise DataError(f"{key}={value} is a classification key (images with one class label each), "
                            "not used for detection; use data.subset for fewer training images")
    coco_keys = (("data.train_images", cfg.train_images, None), ("data.train_annotations", cfg.train_annotations, None),
                 ("data.eval_images", cfg.eval_images, None), ("data.eval_annotations", cfg.eval_annotations, None))
    voc_keys = (("data.classes", cfg.classes, None), ("data.train_split", cfg.train_split, "trainval"),
                ("data.eval_split", cfg.eval_split, "test"))
    foreign = {"coco": ("voc", voc_keys), "voc": ("coco", coco_keys)}.get(cfg.name)
    for key, value, default in foreign[1] if foreign else ():
        if value != default:
            raise DataError(f"{key}={value} is a data.name={foreign[0]} key, not used for data.name={cfg.name}")
    jitter = cfg.scale_jitter
    if jitter is not None and not (len(jitter) == 2 and 0 < jitter[0] <= jitter[1]):
        raise DataError(f"data.scale_jitter={jitter} must be [low, high] with 0 < low <= high")


def _root(cfg: Any) -> Path:
    if not cfg.root:
        raise DataError(f"data.root is not set: the folder holding the {cfg.name} dataset")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={cfg.root}: no such folder")
    return root


def _read_coco(cfg: Any, root: Path) -> tuple[DetectionSplit, DetectionSplit, ImageContainer, ImageContainer]:
    value = {key: getattr(cfg, key) or default for key, default in COCO_DEFAULTS.items()}
    train = read_coco(root / value["train_annotations"], f"data.train_annotations={value['train_annotations']}",
                      "train")
    evaluation = read_coco(root / value["eval_annotations"], f"data.eval_annotations={value['eval_annotations']}",
                           "eval", reference=train)
    return (train, evaluation, find_container(root, value["train_images"], "data.train_images"),
            find_container(root, value["eval_images"], "data.eval_images"))


def _read_voc(cfg: Any, root: Path) -> tuple[DetectionSplit, DetectionSplit, ImageContainer, ImageContainer]:
    for part in ("JPEGImages", "Annotations"):
        if not (root / part).is_dir():
            raise DataError(f"data.root={root} is not a VOC folder: {part}/ is missing")
    classes = list(cfg.classes) if cfg.classes else class_names(
        root, split_ids(root, cfg.train_split, "data.train_split") + split_ids(root, cfg.eval_split, "data.eval_split"))
    if not classes:
        raise DataError(f"data.root={root}: no objects in the VOC annotations of the two splits")
    container = ImageContainer(root / "JPEGImages")
    return (read_voc(root, cfg.train_split, "data.train_split", classes),
            read_voc(root, cfg.eval_split, "data.eval_split", classes), container, container)


def _decode(split: DetectionSplit, container: ImageContainer, on_corrupt: str, keep: bool, progress: bool = False
            ) -> tuple[DetectionSplit, Optional[list[torch.Tensor]]]:
    """Decode the split into memory (``keep``), or check each image opens (``on_corrupt=skip``)."""
    if not keep and on_corrupt != "skip":
        return split, None
    decoded, kept, bad = [], [], []
    records = split.records
    if progress and len(records) >= PROGRESS_FROM:  # decoding a large split up front takes a while
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (a log file gets no carriage-return lines)
        records = tqdm(records, desc=f"decode {split.name}", unit="img", leave=False, disable=None)
    for record in records:
        try:
            image = container.open_rgb(record.file)
        except DataError as err:
            if on_corrupt != "skip":
                raise
            bad.append((record.file, str(err)))
            continue
        if image.size != (record.width, record.height):
            problem = f"image {container.describe(record.file)} is {image.size[0]}x{image.size[1]}, " \
                      f"its annotation says {record.width}x{record.height}"
            if on_corrupt != "skip":
                raise DataError(problem)
            bad.append((record.file, problem))
            continue
        kept.append(record)
        if keep:
            decoded.append(pil_to_uint8(image))
    if bad:
        shown = ", ".join(name for name, _ in bad[:SKIPPED_SHOWN])
        logger.warning("data.on_corrupt=skip: skipped %d unreadable image(s) of the %s split (%s%s)",
                       len(bad), split.name, shown, ", ..." if len(bad) > SKIPPED_SHOWN else "")
    split.records = kept
    return split, (decoded if keep else None)


def _fingerprint(cfg: Any, splits: tuple[DetectionSplit, DetectionSplit],
                 containers: tuple[ImageContainer, ImageContainer]) -> str:
    """The dataset's identity: where its files are, every annotation byte read, the classes and the subset."""
    parts: list[Any] = [cfg.name, splits[0].classes, splits[0].category_ids, cfg.subset]
    for split, container in zip(splits, containers):
        parts += [split.name, split.source, split.content_digest, str(container.path), len(split.records)]
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def build_detection_data(cfg: Any, *, seed: int, device: torch.device, rank: int = 0, world_size: int = 1,
                         progress: bool = False) -> DetectionDataBundle:
    """The detection data of ``cfg`` (``data.*`` with ``name`` coco or voc), for process ``rank`` of ``world_size``.

    Every annotation is read and checked here, so a bad file fails before any training step; the
    images of a small set are decoded here too (see ``IN_MEMORY_BYTES``). ``seed`` fixes the order and
    every augmentation draw, so batches depend on (seed, epoch, step) only. ``progress``: a bar while
    images are decoded up front.
    """
    _check_keys(cfg)
    root = _root(cfg)
    if cfg.name == "coco":
        train, evaluation, train_images, eval_images = _read_coco(cfg, root)
    elif cfg.name == "voc":
        train, evaluation, train_images, eval_images = _read_voc(cfg, root)
    else:
        raise DataError(f"data.name={cfg.name} is not a detection dataset (coco or voc)")
    for split in (train, evaluation):
        if split.dropped_boxes:
            logger.warning("%s: dropped %d box(es) of zero width or height", Path(split.source).name,
                           split.dropped_boxes)
    selection = subset_selection(cfg, len(train.records))
    if selection is not None:
        train.records = [train.records[int(i)] for i in selection]
    fingerprint = _fingerprint(cfg, (train, evaluation), (train_images, eval_images))
    pixels = sum(r.width * r.height * 3 for r in train.records + evaluation.records)
    in_memory = pixels < IN_MEMORY_BYTES
    train, train_decoded = _decode(train, train_images, cfg.on_corrupt, in_memory, progress)
    evaluation, eval_decoded = _decode(evaluation, eval_images, cfg.on_corrupt, in_memory, progress)
    if not train.records:
        raise DataError(f"data.root={root}: the training split has no (readable) images")
    if not evaluation.records:
        raise DataError(f"data.root={root}: the evaluation split has no (readable) images")
    augment = DetectionAugment(flip=cfg.augment == "flip",
                               scale=tuple(cfg.scale_jitter) if cfg.scale_jitter else None)  # type: ignore[arg-type]
    train_set = DetectionImages(train.records, train_images, augment, seed, train_decoded)
    eval_set = DetectionImages(evaluation.records, eval_images, DetectionAugment(), seed, eval_decoded)
    planner = RandomBatchPlanner(len(train.records), cfg.batch_size, seed)
    if planner.steps == 0:
        raise DataError(f"data.batch_size={cfg.batch_size} exceeds the {len(train.records)} training images "
                        "(no full batch)")
    columns = rank_columns(cfg.batch_size, rank, world_size)
    sides = [side for r in train.records + evaluation.records for side in (r.width, r.height)]
    return DetectionDataBundle(
        train=DetectionTrainStream(train_set, planner, columns, device=device, num_workers=cfg.num_workers),
        eval=DetectionEvalStream(eval_set, cfg.eval_batch_size, rank, world_size, device=device,
                                 num_workers=cfg.num_workers),
        num_classes=len(train.classes),
        classes=list(train.classes),
        category_ids=list(train.category_ids),
        in_chans=3,
        image_size=max(sides),
        min_image_side=min(min(r.width, r.height) for r in train.records + evaluation.records),
        train_size=len(train.records),
        fingerprint=fingerprint,
        eval_ground_truth=evaluation.ground_truth(),
    )
