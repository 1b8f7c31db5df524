"""The frozen teacher is fed the resolution it insists on: resized after the re-normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.engine.teacher import FrozenTeacher, TeacherSet
from kdlab.models import Features, create_model
from kdlab.models.input_size import as_size, required_input_size, resize_images


class Recorder(nn.Module):
    """Remembers what it was fed; optionally declares the one resolution it takes."""

    def __init__(self, input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        if input_size is not None:
            self.input_size = input_size
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return x.mean((1, 2, 3))[:, None] * self.scale

    def forward_all(self, x: torch.Tensor) -> Features:
        logits = self(x)
        return Features(logits=logits, embedding=logits, stages=[x], preact_stages=[x])


def frozen(model: nn.Module, **kwargs) -> FrozenTeacher:
    return FrozenTeacher(model, fold_batchnorm=False, **kwargs)


def test_explicit_size_upsamples_bilinearly() -> None:
    model = Recorder()
    x = torch.randn(2, 3, 8, 8)
    frozen(model, input_size=16)(x)
    torch.testing.assert_close(model.seen[0], F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False))


def test_shrinking_is_antialiased_and_non_square_sizes_work() -> None:
    model = Recorder()
    x = torch.randn(2, 3, 32, 32)
    features = frozen(model, input_size=[8, 16]).forward_all(x)
    expected = F.interpolate(x, size=(8, 16), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(model.seen[0], expected)
    assert features.stages[0].shape == (2, 3, 8, 16)


def test_the_size_the_network_declares_is_used_and_others_see_the_batch_as_it_is() -> None:
    fixed, free = Recorder(input_size=(12, 12)), Recorder()
    x = torch.randn(2, 3, 8, 8)
    teacher = frozen(fixed)
    assert teacher.input_size == (12, 12) and frozen(free).input_size is None
    teacher(x)
    frozen(free)(x)
    assert fixed.seen[0].shape == (2, 3, 12, 12)
    assert torch.equal(free.seen[0], x)


def test_already_at_the_size_is_left_alone() -> None:
    model = Recorder(input_size=(8, 8))
    x = torch.randn(2, 3, 8, 8)
    frozen(model)(x)
    assert torch.equal(model.seen[0], x)


def test_renormalisation_comes_first_then_the_resize() -> None:
    model = Recorder()
    data_mean, data_std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    teacher_mean, teacher_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = torch.randn(2, 3, 8, 8)
    frozen(model, data_mean=data_mean, data_std=data_std, teacher_mean=teacher_mean, teacher_std=teacher_std,
           input_size=4)(x)
    pixels = x * torch.tensor(data_std).view(1, 3, 1, 1) + torch.tensor(data_mean).view(1, 3, 1, 1)
    renormalised = (pixels - torch.tensor(teacher_mean).view(1, 3, 1, 1)) / torch.tensor(teacher_std).view(1, 3, 1, 1)
    expected = F.interpolate(renormalised, size=(4, 4), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(model.seen[0], expected)


def test_bf16_batches_are_resized_in_fp32_and_keep_their_dtype() -> None:
    x = torch.randn(2, 3, 16, 16).to(torch.bfloat16)
    out = resize_images(x, (8, 8))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out, resize_images(x.float(), (8, 8)).to(torch.bfloat16))


@pytest.mark.parametrize("bad", [0, [8], [8, -1], "224", [8.0, 8], True])
def test_a_bad_size_is_named(bad) -> None:
    with pytest.raises(ValueError, match="teacher input_size must be a positive int or"):
        frozen(Recorder(), input_size=bad)
    assert as_size([224, 160], "x") == (224, 160) and as_size(32, "x") == (32, 32)


def test_each_member_of_a_teacher_set_gets_its_own_size() -> None:
    small, large = Recorder(input_size=(4, 4)), Recorder()
    teachers = TeacherSet({"small": frozen(small), "large": frozen(large, input_size=16)})
    teachers(torch.randn(2, 3, 8, 8))
    assert small.seen[0].shape[-2:] == (4, 4) and large.seen[0].shape[-2:] == (16, 16)


def test_required_input_size_of_library_and_zoo_models() -> None:
    from torchvision.models import VisionTransformer

    from kdlab.models.tv_adapter import TorchvisionFeatureModel

    assert required_input_size(create_model("resnet8", num_classes=3)) is None
    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8,
                            num_classes=3)
    assert required_input_size(TorchvisionFeatureModel(vit, num_classes=3, probe_size=32)) == (32, 32)


def test_a_timm_vit_teacher_is_resized_to_its_img_size() -> None:
    pytest.importorskip("timm", reason="timm is an optional dependency (in the test extra)")
    vit = create_model("timm:vit_tiny_patch16_224", num_classes=3, img_size=48, depth=1)
    teacher = FrozenTeacher(vit)
    assert teacher.input_size == (48, 48)
    features = teacher.forward_all(torch.randn(2, 3, 32, 32))
    assert features.logits.shape == (2, 3) and [tuple(s.shape[1:]) for s in features.stages] == [(192, 3, 3)]
    with pytest.raises(ValueError, match="takes 48x48 images"):
        vit(torch.randn(1, 3, 32, 32))  # the network itself (a student) is not resized
