"""mlkd_loss / mlkd_loss_parts / MLKDLoss against a float64 loop reference (numpy's percentile for the medians)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.losses import MLKDLoss, logit_standardize, mlkd_loss, mlkd_loss_parts, mlkd_masks


def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    top = max(row)
    exps = [math.exp((v - top) / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def kd(student: list[list[float]], teacher: list[list[float]], temperature: float) -> float:
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = softmax(s_row, temperature), softmax(t_row, temperature)
        total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, p_s) if a > 0)
    return total / len(student) * temperature**2


def gram_gap(student: list[list[float]], teacher: list[list[float]], temperature: float, over: str) -> float:
    """||G_t - G_s||_F^2 with G = P^T P (over="classes") or P P^T (over="batch"), P row-softmaxed."""
    p_s = [softmax(r, temperature) for r in student]
    p_t = [softmax(r, temperature) for r in teacher]
    batch, classes = len(student), len(student[0])
    total = 0.0
    if over == "classes":
        for i in range(classes):
            for j in range(classes):
                g_t = sum(p_t[b][i] * p_t[b][j] for b in range(batch))
                g_s = sum(p_s[b][i] * p_s[b][j] for b in range(batch))
                total += (g_t - g_s) ** 2
    else:
        for a in range(batch):
            for b in range(batch):
                g_t = sum(p_t[a][k] * p_t[b][k] for k in range(classes))
                g_s = sum(p_s[a][k] * p_s[b][k] for k in range(classes))
                total += (g_t - g_s) ** 2
    return total


def masks_reference(teacher_weak: list[list[float]]) -> tuple[list[bool], list[bool]]:
    probabilities = [softmax(row) for row in teacher_weak]
    confidence = [max(p) for p in probabilities]
    class_sums = [sum(p[k] for p in probabilities) for k in range(len(probabilities[0]))]
    sample_cut = np.percentile(np.array(confidence), 50)
    class_cut = np.percentile(np.array(class_sums), 50)
    return [c <= sample_cut for c in confidence], [c <= class_cut for c in class_sums]


def standardize(rows: list[list[float]]) -> list[list[float]]:
    out = []
    for row in rows:
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
        out.append([(v - mean) / (1e-7 + std) for v in row])
    return out


def naive_mlkd(sw, tw, ss, ts, temperature, extras=(3.0, 5.0, 2.0, 6.0), standardized=False) -> dict[str, float]:
    sw, tw, ss, ts = (x.tolist() for x in (sw, tw, ss, ts))
    sample_mask, class_mask = masks_reference(tw)
    sample_share = sum(sample_mask) / len(sample_mask)
    class_share = sum(class_mask) / len(class_mask)
    kd_sw, kd_tw, kd_ss, kd_ts = (standardize(x) for x in (sw, tw, ss, ts)) if standardized else (sw, tw, ss, ts)
    batch, classes = len(sw), len(sw[0])
    parts = {"kd_weak": 0.0, "kd_strong": 0.0, "cc": 0.0, "bc": 0.0}
    for position, t in enumerate([temperature, *extras]):
        parts["kd_weak"] += sample_share * kd(kd_sw, kd_tw, t)
        if position < 3:
            parts["kd_strong"] += kd(kd_ss, kd_ts, t)
        else:  # the official code's last two "strong" terms read the weak view
            parts["kd_strong"] += kd(kd_sw, kd_tw, t)
        parts["cc"] += class_share * gram_gap(sw, tw, t, "classes") / classes
        parts["bc"] += sample_share * gram_gap(sw, tw, t, "batch") / batch
    parts["loss"] = sum(parts.values())
    return parts


def logits(batch: int, classes: int, scale: float = 2.0) -> list[torch.Tensor]:
    return [torch.randn(batch, classes, dtype=torch.float64) * scale for _ in range(4)]


def assert_parts(result: dict[str, torch.Tensor], expected: dict[str, float]) -> None:
    assert set(result) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(result[key], torch.tensor(value, dtype=torch.float64), msg=key)


@pytest.mark.parametrize(("batch", "classes"), [(6, 5), (7, 4), (1, 3)])
def test_matches_the_loop_reference(batch: int, classes: int) -> None:
    inputs = logits(batch, classes)
    assert_parts(mlkd_loss_parts(*inputs, temperature=4.0), naive_mlkd(*inputs, 4.0))
    torch.testing.assert_close(mlkd_loss(*inputs), torch.tensor(naive_mlkd(*inputs, 4.0)["loss"], dtype=torch.float64))


def test_logit_standardization_acts_inside_the_kd_parts_only() -> None:
    inputs = logits(6, 5, scale=3.0)
    result = mlkd_loss_parts(*inputs, temperature=2.0, logit_standardization=True)
    assert_parts(result, naive_mlkd(*inputs, 2.0, standardized=True))
    plain = mlkd_loss_parts(*inputs, temperature=2.0)
    torch.testing.assert_close(result["cc"], plain["cc"])
    torch.testing.assert_close(result["bc"], plain["bc"])
    assert not torch.allclose(result["kd_weak"], plain["kd_weak"])
    # standardising the inputs first gives the same KD parts (the Z-score is idempotent up to eps)
    again = mlkd_loss_parts(*(logit_standardize(x) for x in inputs), temperature=2.0)
    torch.testing.assert_close(again["kd_strong"], result["kd_strong"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("extras", [(), (3.0,), (3.0, 5.0, 2.0, 6.0, 8.0)])
def test_other_temperature_lists_keep_the_first_three_on_the_strong_view(extras) -> None:
    inputs = logits(5, 4)
    assert_parts(mlkd_loss_parts(*inputs, temperature=1.5, extra_temperatures=extras),
                 naive_mlkd(*inputs, 1.5, extras=extras))


def test_masks_equal_numpy_percentiles_with_ties_kept() -> None:
    # rows 0-3 are one row repeated (equal confidences, at the median); columns 1 and 2 are equal (tied sums)
    base = torch.tensor([[2.0, 0.0, 0.0, 1.0]] * 4 + [[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    for teacher in (base, base[:5], base[:, :3], torch.randn(7, 6, dtype=torch.float64), torch.zeros(4, 6)):
        sample_mask, class_mask = mlkd_masks(teacher)
        expected_samples, expected_classes = masks_reference(teacher.tolist())
        assert sample_mask.tolist() == expected_samples
        assert class_mask.tolist() == expected_classes
    sample_mask, class_mask = mlkd_masks(base)
    assert sample_mask.tolist() == [True, True, True, True, False, True]  # the 4 tied rows at the median are kept
    assert class_mask.tolist() == [False, True, True, False]  # the two tied classes at the median are kept
    assert all(mlkd_masks(torch.zeros(4, 6))[0]) and all(mlkd_masks(torch.zeros(4, 6))[1])


def test_a_mask_acts_as_the_fraction_it_keeps() -> None:
    """kd_weak is mean(mask) x the full-batch KD: which rows the mask keeps does not matter."""
    sw, tw, ss, ts = logits(8, 5)
    share = mlkd_masks(tw)[0].double().mean()
    no_extras = mlkd_loss_parts(sw, tw, ss, ts, temperature=3.0, extra_temperatures=())
    torch.testing.assert_close(no_extras["kd_weak"], share * torch.tensor(kd(sw.tolist(), tw.tolist(), 3.0),
                                                                         dtype=torch.float64))


def test_the_strong_view_enters_its_three_kd_terms_only() -> None:
    sw, tw, ss, ts = logits(6, 5)
    a = mlkd_loss_parts(sw, tw, ss, ts)
    b = mlkd_loss_parts(sw, tw, ss + torch.randn_like(ss), ts - 1.0)
    for key in ("kd_weak", "cc", "bc"):
        torch.testing.assert_close(a[key], b[key])
    assert not torch.allclose(a["kd_strong"], b["kd_strong"])


def test_gradients_reach_both_student_views_and_never_the_teacher() -> None:
    sw, tw, ss, ts = (x.float().requires_grad_() for x in logits(6, 5))
    temperature = torch.tensor(3.0, requires_grad=True)
    mlkd_loss(sw, tw, ss, ts, temperature=temperature).backward()
    assert sw.grad is not None and float(sw.grad.abs().sum()) > 0
    assert ss.grad is not None and float(ss.grad.abs().sum()) > 0
    assert tw.grad is None and ts.grad is None  # teacher logits are detached inside
    assert temperature.grad is not None and torch.isfinite(temperature.grad)  # CTKD's temperature learns


def test_a_tensor_temperature_equals_the_float_one() -> None:
    inputs = logits(5, 4)
    torch.testing.assert_close(mlkd_loss(*inputs, temperature=torch.tensor([2.5], dtype=torch.float64)),
                               mlkd_loss(*inputs, temperature=2.5))


def test_identical_logits_give_zero() -> None:
    weak, strong = torch.randn(6, 5), torch.randn(6, 5)
    torch.testing.assert_close(mlkd_loss(weak, weak.clone(), strong, strong.clone()), torch.tensor(0.0))


def test_half_inputs_compute_in_float32() -> None:
    inputs = [x.half() for x in logits(4, 6)]
    result = mlkd_loss(*inputs)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, mlkd_loss(*(x.float() for x in inputs)))


def test_module_matches_function_and_keeps_its_settings() -> None:
    inputs = logits(5, 4)
    module = MLKDLoss(temperature=2.0, extra_temperatures=[3, 4], logit_standardization=True)
    torch.testing.assert_close(module(*inputs), mlkd_loss(*inputs, 2.0, (3.0, 4.0), True))
    assert "extra_temperatures=(3.0, 4.0)" in repr(module)


def test_bad_inputs_name_the_argument_and_shape() -> None:
    good = torch.randn(4, 5)
    with pytest.raises(ValueError, match=r"student_logits_strong \(4, 6\)"):
        mlkd_loss(good, good, torch.randn(4, 6), good)
    with pytest.raises(ValueError, match=r"teacher_logits_weak must be 2-D .* got shape \(4, 5, 1\)"):
        mlkd_loss(good, good[..., None], good, good)
    with pytest.raises(ValueError, match="at least 2 classes"):
        mlkd_loss(*(torch.randn(3, 1) for _ in range(4)))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        mlkd_loss(good, good, good, good, temperature=0.0)
    with pytest.raises(ValueError, match="extra_temperatures must be > 0"):
        mlkd_loss(good, good, good, good, extra_temperatures=(3.0, -1.0))
    with pytest.raises(ValueError, match="extra_temperatures must be a sequence"):
        mlkd_loss(good, good, good, good, extra_temperatures=3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1-element tensor, got shape \(2,\)"):
        mlkd_loss(good, good, good, good, temperature=torch.ones(2))
