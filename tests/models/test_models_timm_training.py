"""timm models as student and as teacher in real (2-step) training runs on tiny synthetic data.

Every listed model trains once as the student and once as the teacher; the stage-based terms
pair a ViT student with a CNN teacher (FitNets) and a CNN student with a ViT teacher (AT), the
ViT teacher at another resolution than the data (its inputs are resized to its img_size).
Teachers are random-weight timm state_dicts saved the way timm saves them (the mechanics do
not need trained ones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

timm = pytest.importorskip("timm", reason="timm is an optional dependency (in the test extra)")

from kdlab.config import load_config  # noqa: E402
from kdlab.engine.builders import build_student  # noqa: E402
from kdlab.engine.trainer import Trainer  # noqa: E402
from kdlab.methods.terms._adapters import ConvRegressor  # noqa: E402

SIZE = 32
TINY = [
    "data.name=synthetic",
    "data.synthetic_train=8",
    "data.synthetic_test=4",
    "data.synthetic_classes=4",
    f"data.synthetic_size={SIZE}",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.augment=none",
    "data.num_workers=0",
    "trainer.progress=none",
    "trainer.device=cpu",
    "trainer.epochs=1",
    "trainer.num_threads=1",
]

VIT = ("timm:vit_tiny_patch16_224", {"img_size": SIZE})
VIT_AT_64 = ("timm:vit_tiny_patch16_224", {"img_size": 64, "depth": 4})  # fed 32 px data, resized to 64
DEIT = ("timm:deit_tiny_patch16_224", {"img_size": SIZE, "patch_size": 8})
RESNET = ("timm:resnet18", {})
CONVNEXT = ("timm:convnext_atto", {})

#: (student, teacher, loss term): each model once on each side
PAIRINGS = [
    (VIT, RESNET, "{name: fitnet, weight: 1.0}"),
    (RESNET, VIT_AT_64, "{name: at, weight: 10.0}"),
    (CONVNEXT, DEIT, "{name: kd, temperature: 4.0}"),
    (DEIT, CONVNEXT, "{name: at, weight: 10.0, stages: all}"),
]


def teacher_file(root: Path, name: str, options: dict[str, Any]) -> Path:
    """A timm state_dict as timm writes it (model.safetensors), for ``name`` with 4 classes."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model(name.removeprefix("timm:"), pretrained=False, num_classes=4, **options)
    path = root / f"{name.removeprefix('timm:')}_{len(options)}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def run(tmp_path: Path, student: tuple[str, dict], teacher: tuple[str, dict], term: str) -> Trainer:
    checkpoint = teacher_file(tmp_path, *teacher)
    cfg = load_config(None, [
        *TINY,
        f"model.name={student[0]}", f"model.kwargs={json.dumps(student[1])}",
        f"teacher.name={teacher[0]}", f"teacher.kwargs={json.dumps(teacher[1])}", f"teacher.checkpoint={checkpoint}",
        f"trainer.out_dir={tmp_path / 'run'}", f"distill.terms=[{{name: ce}}, {term}]",
    ])
    return Trainer(cfg)


@pytest.mark.parametrize(
    "student,teacher,term", PAIRINGS, ids=[f"{s[0][5:]}<-{t[0][5:]}" for s, t, _ in PAIRINGS]
)
def test_timm_student_distils_from_timm_teacher(tmp_path: Path, student, teacher, term) -> None:
    trainer = run(tmp_path, student, teacher, term)
    frozen = {k: v.clone() for k, v in trainer.teacher.model.state_dict().items()}
    start = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    result = trainer.fit()
    assert result.completed
    final = result.history[-1]
    assert all(torch.isfinite(torch.tensor(v)) for k, v in final.items() if isinstance(v, float))
    after = trainer.teacher.model.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen), "the teacher changed"
    assert any(not torch.equal(start[k], v) for k, v in trainer.student.state_dict().items()), "nothing trained"
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_vit_student_fitnet_regresses_its_token_map_onto_the_cnn_stage(tmp_path: Path) -> None:
    trainer = run(tmp_path, VIT, RESNET, "{name: fitnet, weight: 1.0}")
    (regressor,) = [m for m in trainer.method.modules() if isinstance(m, ConvRegressor)]
    # ViT stage 1: 2x2 patch tokens of 192 channels; resnet18 stage 1 at 32 px: (128, 4, 4)
    assert regressor.student_shape == (192, 2, 2) and regressor.teacher_shape == (128, 4, 4)


def test_cnn_student_with_vit_teacher_at_another_resolution(tmp_path: Path) -> None:
    trainer = run(tmp_path, RESNET, VIT_AT_64, "{name: at, weight: 10.0}")
    assert trainer.teacher.input_size == (64, 64)
    seen: list[tuple[int, ...]] = []
    patch_embed = trainer.teacher.model.timm_model.patch_embed
    handle = patch_embed.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    try:
        batch = torch.randn(2, 3, SIZE, SIZE)
        features = trainer.teacher.forward_all(batch)
    finally:
        handle.remove()
    assert [tuple(s.shape[1:]) for s in features.stages] == [(192, 4, 4)] * 4
    # a ViT has no BatchNorm to fold: the teacher runs the model itself, whose patch embedding saw 64 px
    assert trainer.teacher.fold_note.startswith("BatchNorm not folded")
    assert seen == [(2, 3, 64, 64)]


def test_timm_student_on_one_channel_data_gets_in_chans() -> None:
    cfg = load_config(None, ["model.name=timm:resnet18"])
    student = build_student(cfg, num_classes=3, in_chans=1)
    assert student.timm_model.conv1.in_channels == 1
    assert student(torch.randn(2, 1, 16, 16)).shape == (2, 3)
