"""kdlab.deploy.measure and the profile's text: hand-counted parameters and MACs, sizes, timing, summaries."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from kdlab.cli.profile import DEFAULTS
from kdlab.config import ConfigError
from kdlab.deploy.measure import (
    MIN_RUNS,
    TimingSettings,
    count_macs,
    count_parameters,
    example_batch,
    measure_network,
    state_dict_bytes,
    time_forward,
    torch_threads,
)
from kdlab.deploy.profile import ratios
from kdlab.deploy.profile_text import summary_line, to_text
from kdlab.models import create_model
from kdlab.reporting.demo_output import profile_line
from kdlab.reporting.tables import profile_lines, to_markdown

FAST = TimingSettings(warmup=0, repeats=3, max_seconds=0.05, batch_size=4)


def _tiny() -> nn.Module:
    """conv 1->4 3x3 (pad 1) on 8x8, BatchNorm, ReLU, linear 256->10."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10)).eval()


def test_parameters_and_macs_match_hand_counts():
    model = _tiny()
    # conv 4*1*3*3 + 4 bias, BatchNorm 4 weight + 4 bias, linear 256*10 + 10
    assert count_parameters(model) == 40 + 8 + 2570
    # conv: 8*8 output positions x 4 channels x 9 taps = 2304; linear: 256 * 10 = 2560 (BN, ReLU not counted)
    assert count_macs(model, example_batch(1, 1, 8)) == 2304 + 2560


def test_shared_parameters_count_once_and_macs_scale_with_the_batch():
    shared = nn.Linear(6, 6)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert count_parameters(model) == 42
    resnet = create_model("resnet8", num_classes=10, in_chans=1).eval()
    assert count_parameters(resnet) == sum(p.numel() for p in resnet.parameters())
    one = count_macs(resnet, example_batch(1, 1, 8))
    assert one > 0 and count_macs(resnet, example_batch(3, 1, 8)) == 3 * one


def test_fp16_size_is_about_half_and_integer_buffers_stay():
    model = nn.Sequential(nn.Linear(256, 256), nn.BatchNorm1d(256))
    fp32, fp16 = state_dict_bytes(model), state_dict_bytes(model, torch.float16)
    assert 0.45 < fp16 / fp32 < 0.55
    assert fp32 > 4 * 256 * 256  # every weight, 4 bytes each, plus the file's own bytes
    assert model.state_dict()["1.num_batches_tracked"].dtype == torch.int64  # the model itself is untouched


def test_latency_statistics_and_the_time_cap():
    model = _tiny()
    latency = time_forward(model, example_batch(2, 1, 8), dataclasses.replace(FAST, repeats=7, max_seconds=60))
    assert latency.runs == 7 and latency.batch_size == 2
    assert 0 < latency.min_ms <= latency.p25_ms <= latency.median_ms <= latency.p75_ms <= latency.max_ms
    assert latency.images_per_second == pytest.approx(2 / (latency.median_ms / 1000))
    capped = time_forward(model, example_batch(1, 1, 8), dataclasses.replace(FAST, repeats=1000, max_seconds=1e-9))
    assert capped.runs == MIN_RUNS


def test_threads_are_set_for_the_measurement_and_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    model = _tiny().train()
    measured = measure_network(model, 1, 8, FAST)
    assert model.training and torch.get_num_threads() == before  # training mode restored too
    assert measured["latency"]["batch"]["batch_size"] == FAST.batch_size
    assert measured["images_per_second"] > 0 and measured["latency_ms_batch1"] > 0


@pytest.mark.parametrize(("change", "message"), [
    ({"threads": 0}, "--threads must be at least 1"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"warmup": -1}, "--warmup must be at least 0"),
    ({"repeats": 2}, "--repeats must be at least 3"),
    ({"max_seconds": 0}, "--max-seconds must be positive"),
])
def test_bad_settings_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(FAST, **change).validate()


def test_the_cli_defaults_are_the_settings_defaults():
    assert DEFAULTS == dataclasses.asdict(TimingSettings())


def _profile(teacher_top1=96.5, student_top1=95.1, kind="run", student_params=100, student_latency=1.0):
    def entry(name, params, macs, latency, top1):
        lat = {"batch_size": 1, "median_ms": latency, "p25_ms": latency, "p75_ms": latency, "min_ms": latency,
               "max_ms": latency, "runs": 3}
        return {"name": name, "params": params, "macs": macs, "size_mb": params * 4e-6, "size_mb_fp16": params * 2e-6,
                "latency_ms_batch1": latency, "latency_ms_batch": 4 * latency, "images_per_second": 1000 / latency,
                "latency": {"batch1": lat, "batch": {**lat, "batch_size": 4}}, "top1": top1, "top1_source": "test"}

    teacher = entry("resnet20", 350, 4000, 2.5, teacher_top1)
    student = entry("resnet8", student_params, 1000, student_latency, student_top1)
    delta = None if teacher_top1 is None or student_top1 is None else student_top1 - teacher_top1
    profile = {"teacher": teacher, "student": student, "ratios": ratios(teacher, student), "top1_delta": delta,
               "settings": {"threads": 1, "batch_size": 4, "warmup": 0, "repeats": 3, "torch": torch.__version__,
                            "latency": "L", "macs": "M", "size": "S"},
               "source": {"kind": kind, "path": "p", "checkpoint": None, "epoch": None}, "notes": ["a note"]}
    profile["summary"] = summary_line(profile)
    return profile


def test_summary_line_says_smaller_faster_and_the_top1_points():
    profile = _profile()
    assert profile["ratios"]["params"] == 3.5 and profile["ratios"]["latency"] == 2.5
    assert profile["summary"] == ("student resnet8 vs teacher resnet20: 3.5x smaller, 4.0x fewer MACs, "
                                  "2.5x faster (batch 1, 1 thread), top-1 -1.4 points (95.1% vs 96.5%)")
    inverted = _profile(student_params=700, student_latency=5.0)["summary"]
    assert "2.0x larger" in inverted and "2.0x slower" in inverted
    assert "top-1 not known for the teacher (--evaluate measures it)" in _profile(teacher_top1=None)["summary"]
    assert "top-1 not known (a config: fresh weights)" in _profile(None, None, kind="config")["summary"]
    text = to_text(profile)
    assert "teacher resnet20" in text and "3.50x" in text and "-1.40 points" in text and "note: a note" in text


def test_the_demo_line_and_the_report_section_show_the_summary():
    profile = _profile()
    line = profile_line("kd", 0, Path("runs/demo/kd/seed0"), profile)
    assert line == f"profile of kd seed 0 (runs/demo/kd/seed0/profile.json): {profile['summary']}"
    rows = [{"method": "kd", "seeds": 1, "top1_mean": 95.1, "profile": profile, "profile_run": "runs/demo/kd/seed0"},
            {"method": "student", "seeds": 1, "top1_mean": 94.0}]
    assert profile_lines(rows) == [f"kd (runs/demo/kd/seed0): {profile['summary']}"]
    markdown = to_markdown(rows)
    assert "Profiles (`kdlab profile`" in markdown and f"- kd (runs/demo/kd/seed0): {profile['summary']}" in markdown
    assert "Profiles" not in to_markdown(rows[1:])
