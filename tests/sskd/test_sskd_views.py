"""What the SSKD terms see: image-major rows of exact rotations, labels per image, eval rotations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.config import load_config
from kdlab.data import build_data
from kdlab.engine.teacher import FrozenTeacher
from kdlab.losses import sskd_loss
from kdlab.methods.base import BuildContext
from kdlab.methods.build import probe_features
from kdlab.methods.distiller import Distiller
from kdlab.methods.sskd import SSKDHeadTerm, SSKDTerm, rotate4_views, split_views, ss_top1
from kdlab.models.features import Features

from sskd_testkit import TINY, LabelOracle, LinearPixels, head_state

CHANNELS, SIZE, CLASSES = 2, 4, 4
PIXELS = CHANNELS * SIZE * SIZE


def build_context(student: nn.Module, teacher: nn.Module) -> BuildContext:
    device = torch.device("cpu")
    return BuildContext(
        student=student, teacher=teacher, num_classes=CLASSES, train_size=16, image_size=SIZE,
        in_chans=CHANNELS, labels=True, seed=0, epochs=1, steps_per_epoch=1,
        student_probe=probe_features(student, CHANNELS, SIZE, device),
        teacher_probe=probe_features(teacher, CHANNELS, SIZE, device),
    )


def sskd_distiller(tmp_path: Path, student: nn.Module, teacher: nn.Module, **params) -> tuple[Distiller, SSKDTerm]:
    head_file = tmp_path / "teacher_head.pt"
    torch.save(head_state(PIXELS, seed=1), head_file)
    frozen = FrozenTeacher(teacher)
    term = SSKDTerm(build_context(student, frozen), head_checkpoint=str(head_file), **params)
    return Distiller(student, [("sskd", term, 1.0)], teacher=frozen), term


class Recorder(nn.Module):
    """Wraps the term's loss and keeps the arguments it was called with."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def forward(self, *args: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls.append(tuple(a.detach().clone() for a in args))
        return self.inner(*args)


def hand_made_batch(images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    views = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(4)], dim=1)
    return {"image": views, "target": targets, "index": torch.arange(images.shape[0])}


def test_split_views_is_image_major():
    rows = torch.arange(12).reshape(12, 1).expand(12, 3)
    out = split_views(rows, 4, "rows")
    assert out.shape == (3, 4, 3)
    for image in range(3):
        for view in range(4):
            assert torch.equal(out[image, view], rows[image * 4 + view])


@pytest.mark.parametrize("rows, views, needle", [(torch.zeros(10, 3), 4, "10"), (torch.zeros(8, 3), 1, "rotate4")])
def test_split_views_refuses_bad_layouts(rows, views, needle):
    with pytest.raises(ValueError, match=needle):
        split_views(rows, views, "student logits")


def test_rotate4_views_are_torch_rot90():
    images = torch.randn(3, 2, 5, 5)
    views = rotate4_views(images)
    assert views.shape == (3, 4, 2, 5, 5)
    for k in range(4):
        assert torch.equal(views[:, k], torch.rot90(images, k, dims=(2, 3)))
    with pytest.raises(ValueError, match="square"):
        rotate4_views(torch.zeros(2, 1, 4, 5))


def test_term_receives_every_view_of_every_image_in_order(tmp_path: Path):
    student, teacher = LinearPixels(PIXELS, CLASSES, seed=2), LinearPixels(PIXELS, CLASSES, seed=3)
    distiller, term = sskd_distiller(tmp_path, student, teacher)
    term.loss = recorder = Recorder(term.loss)
    images = torch.randn(5, CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([3, 0, 2, 2, 1])
    out = distiller(hand_made_batch(images, targets))

    (s_logits, t_logits, s_head, t_head, seen_targets), = recorder.calls
    assert s_logits.shape == (5, 4, CLASSES) and s_head.shape == (5, 4, PIXELS)
    assert torch.equal(seen_targets, targets)  # one label per image; the loss repeats it per rotated row
    with torch.no_grad():
        for i in range(5):
            for v in range(4):
                view = torch.rot90(images[i : i + 1], v, dims=(2, 3))
                assert torch.allclose(s_logits[i, v], student(view)[0], atol=1e-5), (i, v)
                assert torch.allclose(t_logits[i, v], teacher(view)[0], atol=1e-5), (i, v)
                assert torch.allclose(s_head[i, v], term.student_head(view.flatten(1))[0], atol=1e-5), (i, v)
                assert torch.allclose(t_head[i, v], term.teacher_head(view.flatten(1))[0], atol=1e-5), (i, v)
    # the training-accuracy logits are those of view 0
    assert torch.allclose(out.logits, s_logits[:, 0])
    assert {"sskd", "sskd/ce", "sskd/kd", "sskd/tf", "sskd/ss"} <= set(out.terms)


def test_rotated_rows_carry_their_own_image_label(tmp_path: Path):
    """A teacher right on every view: with tf_ratio=0 only rows it gets right count, i.e. all of them."""
    student, teacher = LinearPixels(PIXELS, CLASSES, seed=5), LabelOracle(PIXELS, CLASSES)
    distiller, _ = sskd_distiller(tmp_path, student, teacher, tf_ratio=0.0)
    targets = torch.tensor([0, 1, 2, 3, 1, 2])
    images = targets.float().reshape(-1, 1, 1, 1).expand(-1, CHANNELS, SIZE, SIZE).contiguous()
    out = distiller(hand_made_batch(images, targets))

    temperature = 4.0
    with torch.no_grad():
        rotated = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in (1, 2, 3)], dim=1).flatten(0, 1)
        s = F.log_softmax(student(rotated) / temperature, dim=1)
        t = F.softmax(teacher(rotated) / temperature, dim=1)
        every_row = F.kl_div(s, t, reduction="none").sum(1).mean() * temperature**2
    assert torch.allclose(out.terms["sskd/tf"], every_row, atol=1e-5)


def test_matches_sskd_loss_on_the_same_tensors(tmp_path: Path):
    student, teacher = LinearPixels(PIXELS, CLASSES, seed=6), LinearPixels(PIXELS, CLASSES, seed=7)
    distiller, term = sskd_distiller(tmp_path, student, teacher, tf_weight=3.0, ss_weight=5.0, ss_ratio=0.5)
    term.loss = recorder = Recorder(term.loss)
    images = torch.randn(6, CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(8))
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    out = distiller(hand_made_batch(images, targets))
    expected = sskd_loss(*recorder.calls[0], tf_weight=3.0, ss_weight=5.0, ss_ratio=0.5)
    for part in ("ce", "kd", "tf", "ss"):
        assert torch.allclose(out.terms[f"sskd/{part}"], expected[part]), part
    assert torch.allclose(out.loss, expected["loss"])


def test_data_pipeline_views_are_exact_rotations_sharing_one_flip():
    cfg = load_config(None, [*TINY, "data.augment=flip", "data.views=rotate4"])
    data = build_data(cfg.data, seed=0)
    batch = next(iter(data.train.epoch(0)))
    images = batch["image"]
    assert images.shape[1] == 4
    for k in range(4):
        assert torch.equal(images[:, k], torch.rot90(images[:, 0], k, dims=(-2, -1))), k


class SortedPixels(nn.Module):
    """Embedding = the image's sorted pixel values: identical for every rotation of an uncropped image."""

    num_classes = 2

    def forward_all(self, x: torch.Tensor) -> Features:
        embedding = x.flatten(1).sort(dim=1).values
        return Features(logits=embedding[:, :2], embedding=embedding, stages=[], preact_stages=[])


def identity_head(term: nn.Module, dim: int) -> None:
    with torch.no_grad():
        for index in (0, 2):
            term.head[index].weight.copy_(torch.eye(dim))
            term.head[index].bias.zero_()


def test_evaluation_rotates_exactly_and_groups_by_batch():
    model = SortedPixels()
    ctx = build_context(LinearPixels(PIXELS, CLASSES, 0), LinearPixels(PIXELS, CLASSES, 1))
    ctx.student_probe = model.forward_all(torch.zeros(2, CHANNELS, SIZE, SIZE))
    term = SSKDHeadTerm(ctx)
    identity_head(term, PIXELS)
    images = torch.rand(10, CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(9))  # positive: ReLU keeps them
    batches = [{"image": images[:7], "target": torch.zeros(7)}, {"image": images[7:], "target": torch.zeros(3)}]
    assert term.evaluate(model, batches) == {"ss_top1": 100.0}
    # groups of one image are skipped (trivially right); nothing left means no metric
    assert ss_top1(model, term.head, [{"image": images[:1]}], group=1) is None
