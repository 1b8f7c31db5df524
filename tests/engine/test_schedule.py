"""Learning-rate schedules are pure functions of the position."""

from __future__ import annotations

import math

import pytest

from kdlab.config import ScheduleConfig
from kdlab.engine.schedule import learning_rate
from kdlab.engine.timelimit import parse_duration


def test_step_schedule_decays_at_milestones_like_multisteplr():
    cfg = ScheduleConfig(name="step", milestones=[150, 180, 210], gamma=0.1)
    lr = lambda e: learning_rate(cfg, 0.05, e, 240)  # noqa: E731
    assert lr(0) == 0.05 and lr(149.99) == 0.05
    assert math.isclose(lr(150), 0.005) and math.isclose(lr(180.5), 0.0005) and math.isclose(lr(239), 0.00005)


def test_cosine_goes_from_base_to_floor():
    cfg = ScheduleConfig(name="cosine", min_lr=0.001)
    assert learning_rate(cfg, 0.1, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cfg, 0.1, 5, 10) == pytest.approx(0.0505)
    assert learning_rate(cfg, 0.1, 10, 10) == pytest.approx(0.001)


def test_warmup_is_linear_from_zero():
    cfg = ScheduleConfig(name="constant", warmup_epochs=2)
    assert learning_rate(cfg, 0.2, 0.5, 10) == pytest.approx(0.05)
    assert learning_rate(cfg, 0.2, 3, 10) == pytest.approx(0.2)


@pytest.mark.parametrize("text, seconds", [("3h50m", 13800), ("90m", 5400), ("45s", 45), ("1h", 3600), ("120", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_names_the_key():
    with pytest.raises(ValueError, match="trainer.time_limit"):
        parse_duration("soon")
