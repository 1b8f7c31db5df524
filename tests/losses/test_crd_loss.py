"""crd_loss, crd_normalizers and crd_update_memory against loop references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses import CRDLoss, crd_loss, crd_normalizers, crd_update_memory


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def naive_exp_scores(anchors: torch.Tensor, bank_rows: torch.Tensor, temperature: float) -> list[list[float]]:
    return [[math.exp(dot(v, u) / temperature) for u in rows] for v, rows in zip(anchors.tolist(), bank_rows.tolist())]


def naive_z(exp_scores: list[list[float]], num_data: int) -> float:
    flat = [e for row in exp_scores for e in row]
    return sum(flat) / len(flat) * num_data


def naive_direction(exp_scores: list[list[float]], z: float, num_data: int) -> float:
    noise = (len(exp_scores[0]) - 1) / num_data  # N * Pn
    total = 0.0
    for row in exp_scores:
        probs = [e / z for e in row]
        total += -math.log(probs[0] / (probs[0] + noise))
        total += sum(-math.log(noise / (p + noise)) for p in probs[1:])
    return total / len(exp_scores)


def make_inputs(batch: int = 4, negatives: int = 5, dim: int = 6) -> tuple[torch.Tensor, ...]:
    def unit(*shape: int) -> torch.Tensor:
        return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=-1)

    return unit(batch, dim), unit(batch, dim), unit(batch, negatives + 1, dim), unit(batch, negatives + 1, dim)


def test_crd_with_batch_estimated_normalizer_matches_naive_loop_reference() -> None:
    student, teacher, student_bank, teacher_bank = make_inputs()
    num_data, temperature = 50, 0.2
    student_exp = naive_exp_scores(student, teacher_bank, temperature)
    teacher_exp = naive_exp_scores(teacher, student_bank, temperature)
    expected = naive_direction(student_exp, naive_z(student_exp, num_data), num_data) + naive_direction(
        teacher_exp, naive_z(teacher_exp, num_data), num_data
    )
    result = crd_loss(student, teacher, student_bank, teacher_bank, temperature, num_data)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_crd_with_given_normalizer_matches_naive_loop_reference() -> None:
    student, teacher, student_bank, teacher_bank = make_inputs()
    num_data, temperature = 1000, 0.07
    student_exp = naive_exp_scores(student, teacher_bank, temperature)
    teacher_exp = naive_exp_scores(teacher, student_bank, temperature)
    expected = naive_direction(student_exp, 3.0e4, num_data) + naive_direction(teacher_exp, 5.0e4, num_data)
    result = crd_loss(
        student, teacher, student_bank, teacher_bank, temperature, num_data=num_data, normalizer=(3.0e4, 5.0e4)
    )
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_crd_normalizers_are_mean_exp_scores_times_num_data() -> None:
    student, teacher, student_bank, teacher_bank = make_inputs()
    z_student, z_teacher = crd_normalizers(student, teacher, student_bank, teacher_bank, 0.1, 200)
    assert z_student == pytest.approx(naive_z(naive_exp_scores(student, teacher_bank, 0.1), 200), rel=1e-9)
    assert z_teacher == pytest.approx(naive_z(naive_exp_scores(teacher, student_bank, 0.1), 200), rel=1e-9)


def test_crd_passing_the_batch_normalizers_equals_estimating_them() -> None:
    student, teacher, student_bank, teacher_bank = make_inputs()
    normalizers = crd_normalizers(student, teacher, student_bank, teacher_bank, 0.07, 100)
    torch.testing.assert_close(
        crd_loss(student, teacher, student_bank, teacher_bank, 0.07, 100, normalizer=normalizers),
        crd_loss(student, teacher, student_bank, teacher_bank, 0.07, 100),
    )


def test_crd_gradient_reaches_both_embeddings_and_is_finite() -> None:
    student, teacher, student_bank, teacher_bank = (x.float() for x in make_inputs())
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    crd_loss(student, teacher, student_bank, teacher_bank, num_data=100).backward()
    for grad in (student.grad, teacher.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_crd_requires_num_data() -> None:
    student, teacher, student_bank, teacher_bank = make_inputs()
    with pytest.raises(ValueError, match="num_data"):
        crd_loss(student, teacher, student_bank, teacher_bank)


def test_crd_bank_shape_mismatch_error_shows_both_shapes() -> None:
    student, teacher, student_bank, _ = make_inputs(batch=4, negatives=5, dim=6)
    with pytest.raises(ValueError, match=r"student_bank_negatives \(4, 6, 6\) and teacher_bank_negatives \(4, 3, 6\)"):
        crd_loss(student, teacher, student_bank, student_bank[:, :3], num_data=10)


def test_crd_bank_dim_mismatch_error_shows_the_expected_layout() -> None:
    student, teacher, _, _ = make_inputs(batch=4, dim=6)
    wrong = torch.randn(4, 3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\(4, 3, 5\) must have shape \(4, N\+1, 6\)"):
        crd_loss(student, teacher, wrong, wrong, num_data=10)


def test_crd_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher, student_bank, teacher_bank = (x.float() for x in make_inputs())
    as_bf16 = [x.bfloat16() for x in (student, teacher, student_bank, teacher_bank)]
    result = crd_loss(*as_bf16, num_data=100)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, crd_loss(*(x.float() for x in as_bf16), num_data=100))
    torch.testing.assert_close(
        result, crd_loss(student, teacher, student_bank, teacher_bank, num_data=100), rtol=0.05, atol=0.05
    )


def test_crd_module_matches_function() -> None:
    student, teacher, student_bank, teacher_bank = make_inputs()
    module = CRDLoss(num_data=77, temperature=0.1)
    expected = crd_loss(student, teacher, student_bank, teacher_bank, 0.1, 77, normalizer=(2.0, 3.0))
    torch.testing.assert_close(module(student, teacher, student_bank, teacher_bank, normalizer=(2.0, 3.0)), expected)


def test_crd_update_memory_mixes_and_renormalises_rows_like_a_loop() -> None:
    bank = F.normalize(torch.randn(10, 4, dtype=torch.float64), dim=1)
    indices = torch.tensor([7, 2, 5])
    new = torch.randn(3, 4, dtype=torch.float64)
    rows = crd_update_memory(bank, indices, new, momentum=0.3)
    for out_row, index, new_row in zip(rows.tolist(), indices.tolist(), new.tolist()):
        mixed = [0.3 * b + 0.7 * n for b, n in zip(bank[index].tolist(), new_row)]
        norm = math.sqrt(sum(v * v for v in mixed))
        assert out_row == pytest.approx([v / norm for v in mixed], rel=1e-12, abs=1e-12)


def test_crd_update_memory_leaves_the_bank_untouched() -> None:
    bank = torch.randn(10, 4)
    before = bank.clone()
    crd_update_memory(bank, torch.tensor([0, 1]), torch.randn(2, 4, requires_grad=True))
    assert torch.equal(bank, before)


def test_crd_update_memory_rejects_out_of_range_indices() -> None:
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\), got values in \[3, 10\]"):
        crd_update_memory(torch.randn(10, 4), torch.tensor([3, 10]), torch.randn(2, 4))
