"""``detections.png`` of the detection demo: ground truth and every model's boxes on a few test canvases.

One row per test canvas (the first ones of the evaluation split, in file order: not chosen to
flatter any model), one column for the ground truth and one per model, each model loaded from
its run folder (``config.yaml`` + ``checkpoints/last.pt``, the final weights the table reports).
Boxes with score >= ``score_threshold`` are drawn with their class name and score; each cell
notes how many detections fell below it (and the top score when none reached it). The figure is
drawn on an explicit Agg canvas, so no display and no pyplot state are involved.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import torch

SCORE_THRESHOLD = 0.5
CELL_INCHES = 2.1


def _load_detector(run_dir: Path, data: Any) -> torch.nn.Module:
    """The run's detector with its final weights, in eval mode, built from the run's own config."""
    from kdlab.config import load_config
    from kdlab.models.checkpoint import load_checkpoint
    from kdlab.tasks import get_task

    cfg = load_config(Path(run_dir) / "config.yaml")
    bare = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, checkpoint=None),
        teacher=dataclasses.replace(cfg.teacher, name=None, checkpoint=None),
    )
    model, _ = get_task("detection").build_networks(bare, data, unsafe_load=False)
    load_checkpoint(model, Path(run_dir) / "checkpoints" / "last.pt")
    return model.eval()


def _eval_data(run_dir: Path) -> Any:
    from kdlab.config import load_config
    from kdlab.tasks import get_task

    cfg = load_config(Path(run_dir) / "config.yaml")
    return get_task("detection").build_data(cfg, device=torch.device("cpu"), rank=0, world_size=1,
                                            channels_last=False, progress=False)


def _draw(ax: Any, image: torch.Tensor, boxes: Any, labels: Any, scores: Any, classes: Sequence[str],
          colors: Any) -> None:
    from matplotlib.patches import Rectangle

    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for i, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist())):
        x1, y1, x2, y2 = box
        color = colors(int(label) % 10)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.4))
        text = classes[int(label) - 1] if 1 <= int(label) <= len(classes) else str(int(label))
        if scores is not None:
            text += f" {float(scores[i]):.2f}"
        ax.text(x1 + 0.3, y1 - 0.4, text, color="black", fontsize=6.5, va="bottom", ha="left",
                bbox={"facecolor": color, "edgecolor": "none", "pad": 0.6, "alpha": 0.85})


@torch.no_grad()
def plot_detections(models: Sequence[tuple[str, Path]], path: str | Path, *, images: int = 6,
                    score_threshold: float = SCORE_THRESHOLD) -> Path:
    """Draw ``images`` test canvases (rows) x (ground truth + one column per (title, run folder))."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not models:
        raise ValueError("plot_detections needs at least one model run")
    data = _eval_data(models[0][1])
    dataset = data.eval.dataset
    count = min(images, len(dataset))
    samples = [dataset[(position, None)] for position in range(count)]
    columns: list[tuple[str, list[dict[str, torch.Tensor]]]] = [
        ("ground truth", [{"boxes": t["boxes"], "labels": t["labels"]} for _, t, _, _ in samples])
    ]
    for title, run_dir in models:
        model = _load_detector(run_dir, data)
        outputs = model([image for image, _, _, _ in samples])
        kept = []
        for out in outputs:
            keep = out["scores"] >= score_threshold
            kept.append({"boxes": out["boxes"][keep], "labels": out["labels"][keep], "scores": out["scores"][keep],
                         "below": int((~keep).sum()),
                         "top": float(out["scores"].max()) if len(out["scores"]) else None})
        columns.append((title, kept))

    figure = Figure(figsize=(CELL_INCHES * len(columns), CELL_INCHES * count + 0.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(count, len(columns), squeeze=False)
    colors = colormaps["tab10"]
    for col, (title, found) in enumerate(columns):
        axes[0][col].set_title(title, fontsize=9)
        for row in range(count):
            image = samples[row][0]
            cell = found[row]
            _draw(axes[row][col], image, cell["boxes"], cell["labels"], cell.get("scores"), data.classes, colors)
            if "below" in cell:  # say what was left out, so an empty cell reads as "unsure", not "nothing"
                note = f"{cell['below']} box(es) < {score_threshold:g}"
                if cell["top"] is not None and cell["top"] < score_threshold:
                    note += f", top score {cell['top']:.2f}"
                axes[row][col].text(0.02, 0.02, note, transform=axes[row][col].transAxes, fontsize=6,
                                    color="white", va="bottom", ha="left",
                                    bbox={"facecolor": "black", "edgecolor": "none", "pad": 0.8, "alpha": 0.6})
    figure.suptitle(f"first {count} test canvases: boxes with score >= {score_threshold:g} (class score)",
                    fontsize=9)
    figure.tight_layout()
    import io

    from kdlab.checkpoint_io import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return atomic_write_bytes(path, buffer.getvalue(), what="plot")  # a regular file or a new path only
