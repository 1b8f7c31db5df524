"""deit_loss / deit_distillation_loss / DeiTLoss against float64 loop-and-math references of the official formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses import DeiTLoss, deit_distillation_loss, deit_loss, deit_loss_parts


def naive_log_softmax(values: list[float]) -> list[float]:
    top = max(values)
    log_total = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - log_total for v in values]


def naive_hard(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean over rows of -log softmax(student)[argmax teacher]."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        label = max(range(len(t_row)), key=lambda k: t_row[k])
        total -= naive_log_softmax(s_row)[label]
    return total / student.shape[0]


def naive_soft(student: torch.Tensor, teacher: torch.Tensor, temperature: float, per: str) -> float:
    """The official code: sum of p_t (log p_t - log p_s) at T, times T^2, over B*K (elements) or B (batch)."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        log_s = naive_log_softmax([v / temperature for v in s_row])
        log_t = naive_log_softmax([v / temperature for v in t_row])
        total += sum(math.exp(lt) * (lt - ls) for ls, lt in zip(log_s, log_t))
    count = student.numel() if per == "elements" else student.shape[0]
    return total * temperature**2 / count


def naive_smoothed_ce(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> float:
    """timm's LabelSmoothingCrossEntropy: (1 - eps) * nll + eps * mean_k(-log p_k), batch mean."""
    total = 0.0
    for row, label in zip(logits.tolist(), targets.tolist()):
        log_p = naive_log_softmax(row)
        total += (1 - smoothing) * -log_p[label] + smoothing * -sum(log_p) / len(log_p)
    return total / logits.shape[0]


def _logits(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64) * 3


def test_hard_distillation_is_ce_against_the_teacher_argmax() -> None:
    student, teacher = _logits(6, 7), _logits(6, 7)
    result = deit_distillation_loss(student, teacher, "hard")
    torch.testing.assert_close(result, torch.tensor(naive_hard(student, teacher), dtype=torch.float64))


@pytest.mark.parametrize("normalization", ["elements", "batch"])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_soft_distillation_matches_the_official_formula(normalization: str, temperature: float) -> None:
    student, teacher = _logits(5, 9), _logits(5, 9)
    result = deit_distillation_loss(student, teacher, "soft", temperature=temperature, normalization=normalization)
    expected = naive_soft(student, teacher, temperature, normalization)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_soft_distillation_equals_the_official_kl_div_expression() -> None:
    """kl_div(log_softmax(s/T), log_softmax(t/T), reduction='sum', log_target=True) * T^2 / numel, as losses.py."""
    student, teacher, t = _logits(4, 6), _logits(4, 6), 2.0
    official = F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="sum", log_target=True
    ) * (t * t) / student.numel()
    torch.testing.assert_close(deit_distillation_loss(student, teacher, "soft", temperature=t), official)


def test_elements_normalization_is_batch_normalization_over_the_class_count() -> None:
    student, teacher = _logits(4, 10), _logits(4, 10)
    elements = deit_distillation_loss(student, teacher, "soft", 2.0, "elements")
    batch = deit_distillation_loss(student, teacher, "soft", 2.0, "batch")
    torch.testing.assert_close(elements * 10, batch)


@pytest.mark.parametrize("distillation", ["hard", "soft"])
def test_deit_loss_weighs_the_class_head_ce_and_the_distillation_head(distillation: str) -> None:
    cls, dist, teacher = _logits(6, 5), _logits(6, 5), _logits(6, 5)
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    alpha, smoothing, t = 0.3, 0.1, 2.0
    distilled = naive_hard(dist, teacher) if distillation == "hard" else naive_soft(dist, teacher, t, "elements")
    expected = (1 - alpha) * naive_smoothed_ce(cls, targets, smoothing) + alpha * distilled
    result = deit_loss(cls, dist, teacher, targets, distillation, alpha=alpha, temperature=t, label_smoothing=smoothing)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))
    parts = deit_loss_parts(cls, dist, teacher, targets, distillation, t, smoothing)
    expected_ce = torch.tensor(naive_smoothed_ce(cls, targets, smoothing), dtype=torch.float64)
    torch.testing.assert_close(parts["ce"], expected_ce)
    torch.testing.assert_close(parts["distillation"], torch.tensor(distilled, dtype=torch.float64))


def test_only_the_class_head_sees_the_labels_and_only_the_distillation_head_the_teacher() -> None:
    cls = torch.randn(4, 5, requires_grad=True)
    dist = torch.randn(4, 5, requires_grad=True)
    parts = deit_loss_parts(cls, dist, torch.randn(4, 5), torch.tensor([0, 1, 2, 3]))
    (grad_cls_from_distillation,) = torch.autograd.grad(parts["distillation"], cls, allow_unused=True)
    (grad_dist_from_ce,) = torch.autograd.grad(parts["ce"], dist, allow_unused=True)
    assert grad_cls_from_distillation is None and grad_dist_from_ce is None


def test_alpha_zero_is_the_smoothed_ce_and_alpha_one_the_distillation() -> None:
    cls, dist, teacher, targets = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 3])
    torch.testing.assert_close(
        deit_loss(cls, dist, teacher, targets, alpha=0.0, label_smoothing=0.0), F.cross_entropy(cls, targets)
    )
    torch.testing.assert_close(
        deit_loss(cls, dist, teacher, targets, alpha=1.0), F.cross_entropy(dist, teacher.argmax(1))
    )


def test_extreme_logits_stay_finite() -> None:
    cls = torch.tensor([[1000.0, -1000.0, 0.0]])
    teacher = torch.tensor([[-1000.0, 1000.0, 0.0]])
    for distillation in ("hard", "soft"):
        assert torch.isfinite(deit_loss(cls, cls, teacher, torch.tensor([1]), distillation))


def test_bfloat16_inputs_give_a_float32_result() -> None:
    cls, dist, teacher = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    targets = torch.tensor([0, 1, 2, 5])
    result = deit_loss(cls.bfloat16(), dist.bfloat16(), teacher.bfloat16(), targets, "soft", temperature=2.0)
    assert result.dtype == torch.float32
    reference = deit_loss(cls, dist, teacher, targets, "soft", temperature=2.0)
    torch.testing.assert_close(result, reference, rtol=0.05, atol=0.02)


def test_module_matches_function() -> None:
    cls, dist, teacher, targets = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    module = DeiTLoss("soft", alpha=0.4, temperature=3.0, label_smoothing=0.0, normalization="batch")
    torch.testing.assert_close(
        module(cls, dist, teacher, targets), deit_loss(cls, dist, teacher, targets, "soft", 0.4, 3.0, 0.0, "batch")
    )
    assert "distillation=soft" in repr(module)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: deit_distillation_loss(torch.randn(4, 5), torch.randn(4, 6)), r"\(4, 5\) and teacher_logits \(4, 6\)"),
        (lambda: deit_distillation_loss(torch.randn(4, 5), torch.randn(4, 5), "medium"), "distillation must be one of"),
        (lambda: deit_distillation_loss(torch.randn(4, 5), torch.randn(4, 5), "soft", 0.0), "temperature"),
        (lambda: deit_distillation_loss(torch.randn(4, 5), torch.randn(4, 5), "soft", 1.0, "mean"), "normalization"),
        (lambda: deit_loss(torch.randn(4, 5), torch.randn(4, 6), torch.randn(4, 6), torch.zeros(4, dtype=torch.long)),
         r"class_logits \(4, 5\) and distillation_logits \(4, 6\)"),
        (lambda: deit_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 3])), r"\[0, 3\)"),
        (lambda: deit_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), alpha=1.5),
         "alpha"),
        (lambda: deit_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]),
                           label_smoothing=1.0), "label_smoothing"),
    ],
)
def test_bad_inputs_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
