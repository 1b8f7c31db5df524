"""Attention transfer on the suite's protocol, trained by a minimal loop that shares nothing with kdlab's trainer.

Why it exists: on the CPU suite AT falls below the plain student, while RepDistiller's
CIFAR-100 table has it above. This script asks whether that comes from kdlab (its trainer, its
``at`` term, bf16 autocast, the teacher cache/feature plumbing) or from the protocol. It reuses
kdlab only for what is not in question: the suite's exact training subset and test split as
uint8 tensors, and the CIFAR zoo's network definitions. Everything else is written here from
RepDistiller's description: the stage features are ``layer1..3``'s outputs, computed module by module,
augmentation is a padded random crop + flip drawn per sample, the attention map is
``normalize(mean_c f^2)``, the loss is ``CE + beta * sum over the three stages of
mean((a_s - a_t)^2)``, SGD with momentum and a per-step cosine schedule, fp32 throughout.

    python benchmarks/cifar10_cpu/at_minimal_loop.py --beta 1000 --seed 0
    python benchmarks/cifar10_cpu/at_minimal_loop.py --beta 0 --seed 0        # the plain student
    python benchmarks/cifar10_cpu/at_minimal_loop.py --student resnet20 --beta 1000

Run from the repository root after the suite's teacher fine-tune (``--teacher`` points
elsewhere). Prints one JSON line with the final test top-1.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdlab.config import load_config
from kdlab.data.build import build_data
from kdlab.models import create_model

SUITE = Path(__file__).resolve().parent
DEFAULT_TEACHER = "runs/bench/cifar10_cpu/teacher/checkpoints/last.pt"


def forward_with_stages(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the outputs of ``layer1..3``, computed module by module (not through kdlab's ``forward_all``)."""
    x = F.relu(model.bn1(model.conv1(x)))
    stages = []
    for layer in (model.layer1, model.layer2, model.layer3):
        x = layer(x)
        stages.append(x)
    return model.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), stages


def attention(feature: torch.Tensor) -> torch.Tensor:
    return F.normalize(feature.pow(2).mean(1).flatten(1), dim=1)


def augment(images: torch.Tensor, generator: torch.Generator, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Random crop 32 of the 4-padded image, then a horizontal flip with probability 1/2, per sample."""
    n, _, size, _ = images.shape
    padded = F.pad(images.float() / 255.0, (4, 4, 4, 4))
    offsets = torch.randint(0, 9, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    crops = []
    for i in range(n):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[i, :, dy:dy + size, dx:dx + size]
        crops.append(crop.flip(-1) if flips[i] else crop)
    return (torch.stack(crops) - mean) / std


@torch.no_grad()
def test_top1(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
              std: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], 500):
        batch = (images[start:start + 500].float() / 255.0 - mean) / std
        correct += int((model(batch).argmax(1) == labels[start:start + 500]).sum())
    model.train()
    return 100.0 * correct / images.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beta", type=float, default=1000.0, help="AT weight (0: the plain student, no teacher)")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--teacher", default=DEFAULT_TEACHER)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-root", default="../shared/data/cifar10-jpg.zip")
    args = parser.parse_args()
    torch.set_num_threads(1)

    cfg = load_config(SUITE / "student.yaml", [f"data.root={args.data_root}"])
    bundle = build_data(cfg.data, seed=args.seed)
    train_images, train_labels = bundle.train.images, bundle.train.labels
    test_images = bundle.eval.images[bundle.eval.indices]
    test_labels = bundle.eval.labels[bundle.eval.indices]
    mean = torch.tensor(bundle.mean).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std).view(1, 3, 1, 1)

    torch.manual_seed(args.seed)
    student = create_model(args.student, num_classes=10)
    teacher = None
    if args.beta > 0:
        teacher = create_model("resnet56", num_classes=10, checkpoint=args.teacher, shortcut="A").eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)

    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    batch, n = 64, train_images.shape[0]
    steps = n // batch
    started = time.perf_counter()
    at_values: list[float] = []
    for epoch in range(args.epochs):
        generator = torch.Generator().manual_seed(1000 * args.seed + epoch)
        order = torch.randperm(n, generator=generator)
        for step in range(steps):
            lr = 0.5 * 0.05 * (1 + math.cos(math.pi * (epoch + step / steps) / args.epochs))
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = order[step * batch:(step + 1) * batch]
            inputs = augment(train_images[index], generator, mean, std)
            logits, student_stages = forward_with_stages(student, inputs)
            loss = F.cross_entropy(logits, train_labels[index])
            if teacher is not None:
                with torch.no_grad():
                    _, teacher_stages = forward_with_stages(teacher, inputs)
                at = sum((attention(s) - attention(t)).pow(2).mean() for s, t in zip(student_stages, teacher_stages))
                at_values.append(float(at.detach()))
                loss = loss + args.beta * at
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    result = {
        "student": args.student,
        "beta": args.beta,
        "seed": args.seed,
        "epochs": args.epochs,
        "top1": round(test_top1(student, test_images, test_labels, mean, std), 2),
        "at_first_epoch": round(sum(at_values[:steps]) / steps, 6) if at_values else None,
        "at_last_epoch": round(sum(at_values[-steps:]) / steps, 6) if at_values else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
