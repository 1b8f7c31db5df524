"""FrozenTeacher: folded/compiled fast forwards give the original network's outputs, as ordinary tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.engine.teacher import FrozenTeacher
from kdlab.models import create_model


def _teacher_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("resnet8", num_classes=5)
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.3)
            module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
    return model


def _assert_features_close(a, b, tol: float = 1e-4) -> None:
    pairs = [(a.logits, b.logits), (a.embedding, b.embedding), *zip(a.stages, b.stages)]
    for ref, got in pairs:
        assert torch.allclose(ref, got, atol=tol * max(ref.abs().max().item(), 1.0), rtol=0)


def test_folded_forward_equals_the_original_and_leaves_it_untouched() -> None:
    net = _teacher_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(6, 3, 32, 32)
    folded = FrozenTeacher(net)
    plain = FrozenTeacher(net, fold_batchnorm=False)
    _assert_features_close(plain.forward_all(x), folded.forward_all(x))
    assert folded.fold_note.startswith("9 BatchNorm layer(s) folded"), folded.fold_note
    assert plain.fold_note.startswith("BatchNorm folding off")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert set(folded.state_dict()) == {f"model.{k}" for k in before}, "the folded copy must not be saved"
    assert not any(p.requires_grad for p in folded.parameters())


def test_outputs_are_ordinary_tensors_a_loss_can_save_for_backward() -> None:
    teacher = FrozenTeacher(_teacher_net())
    x = torch.randn(4, 3, 32, 32)
    feats = teacher.forward_all(x)
    assert not torch.is_inference(feats.logits) and not feats.logits.requires_grad
    student = torch.randn(4, 5, requires_grad=True)
    # mse saves both inputs for backward: an inference tensor would raise here
    nn.functional.mse_loss(student * 2.0, feats.logits).backward()
    assert student.grad is not None
    with torch.inference_mode():
        assert torch.is_inference(teacher(x))  # inside inference mode (the cache builder) no copy is made


def test_folding_is_checked_in_fp32_under_a_bf16_autocast() -> None:
    teacher = FrozenTeacher(_teacher_net())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        teacher(torch.randn(4, 3, 32, 32))
    assert "folded" in teacher.fold_note and not teacher.fold_note.startswith("BatchNorm not")


def test_moving_the_teacher_after_the_first_forward_moves_the_folded_copy() -> None:
    teacher = FrozenTeacher(_teacher_net())
    x = torch.randn(2, 3, 32, 32)
    reference = teacher(x)
    teacher.to(torch.float64)
    out = teacher(x.double())
    assert out.dtype == torch.float64
    assert torch.allclose(out.float(), reference, atol=1e-4)


def test_teacher_stays_in_eval_mode() -> None:
    teacher = FrozenTeacher(_teacher_net())
    teacher.train()
    assert not teacher.training and not teacher.model.training


def test_compiled_teacher_matches_the_eager_one() -> None:
    pytest.importorskip("torch._inductor")
    net = _teacher_net(1)
    x = torch.randn(4, 3, 32, 32)
    eager = FrozenTeacher(net, fold_batchnorm=False).forward_all(x)
    try:
        compiled = FrozenTeacher(net, compile=True).forward_all(x)
    except Exception as err:  # no C++ compiler on this machine: inductor cannot build kernels
        if "compiler" in str(err).lower() or "InvalidCxxCompiler" in type(err).__name__:
            pytest.skip(f"torch.compile unavailable here: {err}")
        raise
    _assert_features_close(eager, compiled, tol=1e-3)


def test_renormalisation_is_skipped_when_the_statistics_agree_and_exact_otherwise() -> None:
    net = _teacher_net()
    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    same = FrozenTeacher(net, *imagenet, *imagenet)
    assert same.scale is None and same.shift is None
    data = ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    other = FrozenTeacher(net, *data, *imagenet, fold_batchnorm=False)
    x = torch.randn(2, 3, 32, 32)
    raw = x * torch.tensor(data[1]).view(1, 3, 1, 1) + torch.tensor(data[0]).view(1, 3, 1, 1)
    as_teacher = (raw - torch.tensor(imagenet[0]).view(1, 3, 1, 1)) / torch.tensor(imagenet[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net.eval()(as_teacher)
    assert torch.allclose(other(x), expected, atol=1e-5)


def test_bf16_teacher_hands_out_fp32_outputs_within_bf16_rounding() -> None:
    net = _teacher_net()
    x = torch.randn(16, 3, 32, 32)
    fp32 = FrozenTeacher(net, precision="fp32").forward_all(x)
    bf16 = FrozenTeacher(net, precision="bf16").forward_all(x)
    for got in (bf16.logits, bf16.embedding, *bf16.stages):
        assert got.dtype == torch.float32 and not torch.is_inference(got)
    # bf16 keeps 8 significant bits: a few percent of the largest logit after 8 layers
    scale = fp32.logits.abs().max()
    assert (bf16.logits - fp32.logits).abs().max() <= 0.05 * scale
    assert not torch.equal(bf16.logits, fp32.logits), "the bf16 teacher must actually run in bf16"
    with torch.inference_mode():
        assert FrozenTeacher(net, precision="bf16")(x).dtype == torch.float32  # the cache builder's path


def test_teacher_precision_overrides_the_surrounding_autocast() -> None:
    net = _teacher_net()
    x = torch.randn(8, 3, 32, 32)
    plain = FrozenTeacher(net, precision="fp32")(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fixed = FrozenTeacher(net, precision="fp32")(x)
        inherited = FrozenTeacher(net)(x)
    assert torch.equal(fixed, plain), "an fp32 teacher stays fp32 inside the student's bf16 autocast"
    assert inherited.dtype == torch.bfloat16, "precision None follows the surrounding autocast"
    with pytest.raises(ValueError, match="teacher precision"):
        FrozenTeacher(net, precision="fp16")


def test_teacher_precision_config_follows_the_trainer_unless_set() -> None:
    from kdlab.config import load_config
    from kdlab.engine.builders import teacher_precision

    assert teacher_precision(load_config(None, [])) == "fp32"
    assert teacher_precision(load_config(None, ["trainer.precision=bf16"])) == "bf16"
    assert teacher_precision(load_config(None, ["trainer.precision=bf16", "teacher.precision=fp32"])) == "fp32"
    assert teacher_precision(load_config(None, ["teacher.precision=bf16"])) == "bf16"
