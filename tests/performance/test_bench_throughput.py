"""``kdlab bench throughput`` runs the four configurations side by side (a tiny, quick configuration)."""

from __future__ import annotations

import json

import pytest
import yaml

from kdlab.benchmarks.throughput_clock import Finished, SliceClock
from kdlab.cli.main import main


class FakeChannel:
    def __init__(self, commands):
        self.commands = list(commands)
        self.sent = []

    def receive(self):
        return self.commands.pop(0)

    def send(self, message):
        self.sent.append(message)


def test_slice_clock_skips_warmup_steps_and_reports_each_slice():
    import torch

    channel = FakeChannel([{"cmd": "measure", "seconds": 0.0}, {"cmd": "measure", "seconds": 0.0}, {"cmd": "stop"}])
    clock = SliceClock(channel, torch.device("cpu"), warmup=2)
    steps = 0
    with pytest.raises(Finished):
        images = 0
        while True:
            clock.tick(images)
            images = 10 + steps  # the step's batch size
            steps += 1
    # per slice: 2 warm-up steps, then one timed step (0 s slices end at the first check)
    assert [m["steps"] for m in channel.sent] == [1, 1]
    assert [m["images"] for m in channel.sent] == [12, 15]


def test_bench_throughput_reports_all_configurations(tiny, tmp_path, capsys):
    config_file = tmp_path / "kd.yaml"
    config_file.write_text(yaml.safe_dump({}))
    args = ["--seconds", "0.2", "--rounds", "1", "--warmup-steps", "1", "--json"]
    code = main(["bench", "throughput", str(config_file), *tiny["overrides"], *args])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for kind in ("reference", "student_only", "distill_live", "distill_cached"):
        assert result[f"{kind}_ips"] > 0, kind
        assert result["peak_memory_mb"][kind] > 0, kind
    expected = {"distill_live/reference", "distill_cached/student_only", "distill_cached/reference"}
    assert set(result["ratios"]) == expected
    assert result["cache"]["built"] is True


def test_bench_throughput_needs_a_kd_config(tiny, tmp_path, capsys):
    config_file = tmp_path / "ce.yaml"
    config_file.write_text("{}")
    overrides = [*tiny["overrides"], "distill.terms=[{name: ce}]"]
    code = main(["bench", "throughput", str(config_file), *overrides, "--seconds", "0.1"])
    assert code == 2
    assert "must include kd" in capsys.readouterr().err
