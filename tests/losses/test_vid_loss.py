"""vid_loss / VIDLoss against a loop reference over samples, channels and positions (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import VIDLoss, vid_log_scale_init, vid_loss, vid_variance


def naive_vid(mean: torch.Tensor, target: torch.Tensor, log_scale: torch.Tensor, eps: float = 1e-5) -> float:
    """Mean over b, c, h, w of 0.5 ((mu - t)^2 / v_c + log v_c), v_c = log(1 + exp(alpha_c)) + eps."""
    batch, channels, height, width = mean.shape
    mu, t, alpha = mean.tolist(), target.tolist(), log_scale.tolist()
    total, count = 0.0, 0
    for b in range(batch):
        for c in range(channels):
            v = math.log(1.0 + math.exp(alpha[c])) + eps
            for h in range(height):
                for w in range(width):
                    total += 0.5 * ((mu[b][c][h][w] - t[b][c][h][w]) ** 2 / v + math.log(v))
                    count += 1
    return total / count


def _case(batch: int = 3, channels: int = 4, height: int = 3, width: int = 5):
    mean = torch.randn(batch, channels, height, width, dtype=torch.float64)
    target = torch.randn(batch, channels, height, width, dtype=torch.float64)
    log_scale = torch.randn(channels, dtype=torch.float64)
    return mean, target, log_scale


def test_vid_matches_naive_loop_reference() -> None:
    mean, target, log_scale = _case()
    expected = torch.tensor(naive_vid(mean, target, log_scale), dtype=torch.float64)
    torch.testing.assert_close(vid_loss(mean, target, log_scale), expected)


def test_vid_eps_is_added_to_the_variance() -> None:
    mean, target, log_scale = _case()
    expected = torch.tensor(naive_vid(mean, target, log_scale, eps=0.3), dtype=torch.float64)
    torch.testing.assert_close(vid_loss(mean, target, log_scale, eps=0.3), expected)


def test_vid_lists_of_layers_are_summed() -> None:
    first, second = _case(2, 3, 4, 4), _case(2, 5, 2, 2)
    expected = naive_vid(*first) + naive_vid(*second)
    result = vid_loss([first[0], second[0]], [first[1], second[1]], [first[2], second[2]])
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_vid_init_gives_variance_five_as_repdistiller() -> None:
    init = vid_log_scale_init(5.0, 1e-5)
    # RepDistiller: log(exp(init_pred_var - eps) - 1)
    assert init == pytest.approx(math.log(math.exp(5.0 - 1e-5) - 1.0))
    variance = vid_variance(torch.full((3,), init, dtype=torch.float64))
    torch.testing.assert_close(variance, torch.full((3,), 5.0, dtype=torch.float64))


def test_vid_of_perfect_mean_is_half_log_variance() -> None:
    target = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    log_scale = torch.full((3,), vid_log_scale_init(5.0), dtype=torch.float64)
    expected = torch.tensor(0.5 * math.log(5.0), dtype=torch.float64)
    torch.testing.assert_close(vid_loss(target.clone(), target, log_scale), expected)


def test_vid_gradient_reaches_mean_and_log_scale_not_a_detached_teacher() -> None:
    mean = torch.randn(2, 3, 4, 4, requires_grad=True)
    log_scale = torch.zeros(3, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 4)
    vid_loss(mean, teacher, log_scale).backward()
    for grad in (mean.grad, log_scale.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_vid_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"vid_loss: pred_mean \(2, 3, 4, 4\) and teacher_features \(2, 3, 2, 2\)"):
        vid_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2), torch.zeros(3))


def test_vid_log_scale_must_have_one_value_per_channel() -> None:
    with pytest.raises(ValueError, match=r"log_scale must have shape \(3,\).*\(2, 3, 4, 4\), got \(4,\)"):
        vid_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.zeros(4))


def test_vid_rejects_non_4d_and_mixed_list_inputs() -> None:
    with pytest.raises(ValueError, match=r"pred_mean must be 4-D .* got shape \(2, 3\)"):
        vid_loss(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"pred_mean\[1\] \(2, 3, 2, 2\) and teacher_features\[1\] \(2, 3, 4, 4\)"):
        vid_loss([torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)], [torch.randn(2, 3, 4, 4)] * 2,
                 [torch.zeros(3)] * 2)
    with pytest.raises(ValueError, match="equal length"):
        vid_loss([torch.randn(2, 3, 4, 4)], [], [torch.zeros(3)])
    with pytest.raises(ValueError, match="all be tensors or all be lists"):
        vid_loss(torch.randn(2, 3, 4, 4), [torch.randn(2, 3, 4, 4)], torch.zeros(3))


def test_vid_half_inputs_give_float32_result() -> None:
    mean, target = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    log_scale = torch.randn(3)
    for dtype in (torch.float16, torch.bfloat16):
        result = vid_loss(mean.to(dtype), target.to(dtype), log_scale.to(dtype))
        assert result.dtype == torch.float32
        torch.testing.assert_close(
            result, vid_loss(mean.to(dtype).float(), target.to(dtype).float(), log_scale.to(dtype).float())
        )
        torch.testing.assert_close(result, vid_loss(mean, target, log_scale), rtol=0.05, atol=1e-2)


def test_vid_module_matches_function() -> None:
    mean, target, log_scale = _case()
    torch.testing.assert_close(VIDLoss(eps=1e-3)(mean, target, log_scale), vid_loss(mean, target, log_scale, 1e-3))
    with pytest.raises(ValueError, match="eps must be > 0"):
        VIDLoss(eps=0)
