"""sskd_loss, its row selection and the teacher self-supervision helpers against loop references."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import SSKDLoss, select_confident_rows, sskd_loss, sskd_similarity, sskd_ss_accuracy, sskd_ss_ce_loss


def naive_softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def naive_kl(student_row: list[float], teacher_row: list[float], temperature: float) -> float:
    p_s = naive_softmax([v / temperature for v in student_row])
    p_t = naive_softmax([v / temperature for v in teacher_row])
    return sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s) if pt > 0)


def naive_cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def naive_similarity(head: torch.Tensor) -> list[list[float]]:
    values = head.tolist()
    batch, views = len(values), len(values[0])
    return [
        [naive_cosine(values[i][v], values[j][0]) for j in range(batch)] for i in range(batch) for v in range(1, views)
    ]


def naive_kept_rows(teacher_rows: list[list[float]], true_columns: list[int], ratio: float) -> list[int]:
    """Rank = columns strictly above the true one; keep all right rows + int(ratio * wrong) lowest-rank wrong rows."""
    ranks = []
    for row, true in zip(teacher_rows, true_columns):
        ranks.append(sum(1 for value in row if value > row[true]))
    right = [r for r in range(len(ranks)) if ranks[r] == 0]
    wrong = sorted((ranks[r], r) for r in range(len(ranks)) if ranks[r] > 0)
    kept_wrong = [r for _, r in wrong[: int(ratio * len(wrong))]]
    return sorted(right + kept_wrong)


def naive_sskd(
    s_logits, t_logits, s_head, t_head, targets, *, T, ss_T, weights, tf_ratio, ss_ratio
) -> dict[str, float]:
    s, t, y = s_logits.tolist(), t_logits.tolist(), targets.tolist()
    batch, views = len(s), len(s[0])
    ce = sum(-math.log(naive_softmax(s[i][0])[y[i]]) for i in range(batch)) / batch
    kd = sum(naive_kl(s[i][0], t[i][0], T) for i in range(batch)) / batch * T**2

    rotated_s = [s[i][v] for i in range(batch) for v in range(1, views)]
    rotated_t = [t[i][v] for i in range(batch) for v in range(1, views)]
    rotated_y = [y[i] for i in range(batch) for _ in range(1, views)]
    kept = naive_kept_rows(rotated_t, rotated_y, tf_ratio)
    tf = sum(naive_kl(rotated_s[r], rotated_t[r], T) for r in kept) / len(kept) * T**2 if kept else 0.0

    sim_s, sim_t = naive_similarity(s_head), naive_similarity(t_head)
    sources = [i for i in range(batch) for _ in range(1, views)]
    kept = naive_kept_rows(sim_t, sources, ss_ratio)
    ss = sum(naive_kl(sim_s[r], sim_t[r], ss_T) for r in kept) / len(kept) * ss_T**2 if kept else 0.0

    w_ce, w_kd, w_tf, w_ss = weights
    return {"ce": ce, "kd": kd, "tf": tf, "ss": ss, "loss": w_ce * ce + w_kd * kd + w_tf * tf + w_ss * ss}


def assert_matches(result: dict[str, torch.Tensor], expected: dict[str, float]) -> None:
    assert set(result) == {"ce", "kd", "tf", "ss", "loss"}
    for key, value in expected.items():
        torch.testing.assert_close(result[key], torch.tensor(value, dtype=result[key].dtype), msg=key)


def random_inputs(batch: int = 5, views: int = 4, classes: int = 6) -> tuple[torch.Tensor, ...]:
    return (
        torch.randn(batch, views, classes, dtype=torch.float64) * 2,
        torch.randn(batch, views, classes, dtype=torch.float64) * 2,
        torch.randn(batch, views, 5, dtype=torch.float64),
        torch.randn(batch, views, 3, dtype=torch.float64),
        torch.randint(0, classes, (batch,)),
    )


def test_sskd_matches_naive_loop_reference_with_default_hyper_parameters() -> None:
    inputs = random_inputs()
    expected = naive_sskd(*inputs, T=4.0, ss_T=0.5, weights=(0.1, 0.9, 2.7, 10.0), tf_ratio=1.0, ss_ratio=0.75)
    assert_matches(sskd_loss(*inputs), expected)


def test_sskd_matches_naive_loop_reference_with_ratios_below_one() -> None:
    inputs = random_inputs(batch=6)
    result = sskd_loss(
        *inputs,
        temperature=2.0,
        ss_temperature=0.3,
        ce_weight=1.0,
        kd_weight=0.5,
        tf_weight=1.5,
        ss_weight=2.0,
        tf_ratio=0.4,
        ss_ratio=0.25,
    )
    expected = naive_sskd(*inputs, T=2.0, ss_T=0.3, weights=(1.0, 0.5, 1.5, 2.0), tf_ratio=0.4, ss_ratio=0.25)
    assert_matches(result, expected)


def test_sskd_matches_naive_loop_reference_with_ties_in_teacher_scores() -> None:
    batch, views, classes = 6, 4, 4
    student_logits = torch.randn(batch, views, classes, dtype=torch.float64)
    # Integer teacher logits in {0, 1, 2}: many rows tie at the top and many wrong rows share a rank.
    teacher_logits = torch.randint(0, 3, (batch, views, classes)).double()
    # Teacher head outputs from a tiny integer set (plus a constant component, never zero):
    # identical columns and duplicated rows tie in the similarity matrix.
    teacher_head = torch.cat(
        [torch.randint(0, 2, (batch, views, 2)).double(), torch.ones(batch, views, 1, dtype=torch.float64)], dim=2
    )
    student_head = torch.randn(batch, views, 3, dtype=torch.float64)
    targets = torch.randint(0, classes, (batch,))
    inputs = (student_logits, teacher_logits, student_head, teacher_head, targets)

    t_rows = teacher_logits[:, 1:].reshape(-1, classes)
    t_ranks = (t_rows > t_rows.gather(1, targets.repeat_interleave(views - 1)[:, None])).sum(1)
    assert len(set(t_ranks[t_ranks > 0].tolist())) < int((t_ranks > 0).sum()), "need wrong rows sharing a rank"

    # The ratios make both cuts fall inside a group of wrong rows of equal rank.
    result = sskd_loss(*inputs, tf_ratio=0.6, ss_ratio=0.5)
    expected = naive_sskd(*inputs, T=4.0, ss_T=0.5, weights=(0.1, 0.9, 2.7, 10.0), tf_ratio=0.6, ss_ratio=0.5)
    assert_matches(result, expected)


def test_select_confident_rows_keeps_top_ties_and_breaks_equal_ranks_by_row_order() -> None:
    scores = torch.tensor(
        [
            [3.0, 1.0, 2.0],  # rank 0
            [1.0, 3.0, 2.0],  # rank 2
            [2.0, 2.0, 1.0],  # tie at the top: rank 0, counts as right
            [1.0, 2.0, 3.0],  # rank 2
            [2.0, 3.0, 1.0],  # rank 1
        ]
    )
    true_columns = torch.zeros(5, dtype=torch.long)
    # Three wrong rows; int(0.7 * 3) = 2 kept: rank 1 (row 4), then the lower-index rank-2 row (row 1).
    assert select_confident_rows(scores, true_columns, 0.7).tolist() == [0, 1, 2, 4]
    assert select_confident_rows(scores, true_columns, 0.0).tolist() == [0, 2]
    assert select_confident_rows(scores, true_columns, 1.0).tolist() == [0, 1, 2, 3, 4]


def test_sskd_tf_is_zero_and_backward_works_when_no_row_is_kept() -> None:
    batch, views, classes = 3, 4, 5
    targets = torch.tensor([0, 1, 2])
    teacher_logits = torch.zeros(batch, views, classes)
    teacher_logits[..., 4] = 5.0  # teacher always predicts class 4: every rotated row is wrong
    student_logits = torch.randn(batch, views, classes, requires_grad=True)
    result = sskd_loss(
        student_logits,
        teacher_logits,
        torch.randn(batch, views, 3),
        torch.randn(batch, views, 3),
        targets,
        tf_ratio=0.0,
    )
    assert result["tf"].item() == 0.0
    result["tf"].backward()
    assert student_logits.grad is not None and torch.isfinite(student_logits.grad).all()


def test_sskd_total_is_the_weighted_sum_of_terms() -> None:
    result = sskd_loss(*random_inputs(), ce_weight=0.3, kd_weight=0.2, tf_weight=0.7, ss_weight=1.1)
    expected = 0.3 * result["ce"] + 0.2 * result["kd"] + 0.7 * result["tf"] + 1.1 * result["ss"]
    torch.testing.assert_close(result["loss"], expected)


def test_sskd_gradient_reaches_student_logits_and_head_and_is_finite() -> None:
    s_logits, t_logits, s_head, t_head, targets = (x.float() if x.is_floating_point() else x for x in random_inputs())
    s_logits.requires_grad_(True)
    s_head.requires_grad_(True)
    sskd_loss(s_logits, t_logits, s_head, t_head, targets)["loss"].backward()
    for grad in (s_logits.grad, s_head.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_sskd_similarity_rows_are_image_major_cosines_to_normal_views() -> None:
    head = torch.randn(3, 4, 5, dtype=torch.float64)
    expected = torch.tensor(naive_similarity(head), dtype=torch.float64)
    torch.testing.assert_close(sskd_similarity(head), expected)


def test_sskd_ss_ce_loss_matches_naive_cross_entropy_without_temperature() -> None:
    head = torch.randn(4, 3, 6, dtype=torch.float64)
    rows = naive_similarity(head)
    sources = [i for i in range(4) for _ in range(2)]
    expected = sum(-math.log(naive_softmax(row)[src]) for row, src in zip(rows, sources)) / len(rows)
    torch.testing.assert_close(sskd_ss_ce_loss(head), torch.tensor(expected, dtype=torch.float64))


def test_sskd_ss_accuracy_counts_rows_whose_argmax_is_the_source_image() -> None:
    head = torch.eye(4).unsqueeze(1).repeat(1, 4, 1)  # every view of image i equals e_i: all rows right
    assert sskd_ss_accuracy(head).item() == 1.0
    head[0, 1] = head[2, 0]  # one of 12 rows now points at image 2
    accuracy = sskd_ss_accuracy(head)
    assert accuracy.dtype == torch.float32
    assert accuracy.item() == pytest.approx(11 / 12)


def test_sskd_logits_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"sskd_loss: student_logits \(2, 4, 10\) and teacher_logits \(2, 4, 100\)"):
        sskd_loss(
            torch.randn(2, 4, 10),
            torch.randn(2, 4, 100),
            torch.randn(2, 4, 3),
            torch.randn(2, 4, 3),
            torch.tensor([0, 1]),
        )


def test_sskd_head_batch_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"teacher_embedding \(3, 4, 3\) and student_logits \(2, 4, 10\)"):
        sskd_loss(
            torch.randn(2, 4, 10),
            torch.randn(2, 4, 10),
            torch.randn(2, 4, 3),
            torch.randn(3, 4, 3),
            torch.tensor([0, 1]),
        )


def test_sskd_needs_rotated_views() -> None:
    with pytest.raises(ValueError, match=r"student_logits \(2, 1, 10\) needs at least 2 views"):
        sskd_loss(
            torch.randn(2, 1, 10),
            torch.randn(2, 1, 10),
            torch.randn(2, 1, 3),
            torch.randn(2, 1, 3),
            torch.tensor([0, 1]),
        )


def test_sskd_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    s_logits, t_logits, s_head, t_head, targets = (x.float() if x.is_floating_point() else x for x in random_inputs())
    as_bf16 = [x.bfloat16() for x in (s_logits, t_logits, s_head, t_head)]
    result = sskd_loss(*as_bf16, targets)
    reference = sskd_loss(*(x.float() for x in as_bf16), targets)
    for key in ("ce", "kd", "tf", "ss", "loss"):
        assert result[key].dtype == torch.float32
        torch.testing.assert_close(result[key], reference[key])


def test_sskd_module_matches_function() -> None:
    inputs = random_inputs()
    module = SSKDLoss(temperature=3.0, ss_temperature=0.4, tf_ratio=0.5, ss_ratio=0.5)
    expected = sskd_loss(*inputs, temperature=3.0, ss_temperature=0.4, tf_ratio=0.5, ss_ratio=0.5)
    result = module(*inputs)
    for key in expected:
        torch.testing.assert_close(result[key], expected[key])
