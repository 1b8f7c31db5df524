"""The task scheduler of the suite and the report's comparison helpers."""

from __future__ import annotations

import math
import operator

import pytest

from kdlab.benchmarks.suite_report import spearman, verdict
from kdlab.benchmarks.suite_schedule import StopSuite, Task, run_tasks


def _tasks() -> list[Task]:
    return [
        Task("a", "a", math.sqrt, (16.0,)),
        Task("bad", "bad", math.sqrt, (-1.0,)),  # ValueError: math domain error
        Task("b", "b", operator.add, (1, 2), deps=("a",)),
        Task("c", "c", operator.add, (3, 4), deps=("bad",)),
    ]


@pytest.mark.parametrize("jobs", [1, 2])
def test_dependents_of_a_failed_task_are_skipped_and_the_rest_runs(jobs):
    seen: list[str] = []
    results, stopped = run_tasks(_tasks(), jobs, lambda r: seen.append(r.task.key))
    assert stopped is None and sorted(seen) == ["a", "b", "bad", "c"]
    assert results["a"].value == 4.0 and results["b"].value == 3
    assert isinstance(results["bad"].error, ValueError)
    assert results["c"].skipped == "bad did not succeed" and not results["c"].ok


def test_inline_tasks_run_in_list_order():
    seen: list[str] = []
    run_tasks(_tasks(), 1, lambda r: seen.append(r.task.key))
    assert seen == ["a", "bad", "b", "c"]


def test_a_stopping_error_skips_everything_after_it():
    tasks = [Task("x", "x", operator.truediv, (1, 0)), Task("y", "y", operator.add, (1, 1))]
    results, stopped = run_tasks(tasks, 1, lambda r: None, stop_types=(ZeroDivisionError,))
    assert isinstance(stopped, ZeroDivisionError)
    assert results["y"].skipped.startswith("the suite stopped")


def test_fail_fast_stops_at_the_first_failure():
    results, stopped = run_tasks(_tasks(), 1, lambda r: None, stop_on_failure=True)
    assert isinstance(stopped, ValueError) and results["b"].skipped and results["c"].skipped


def test_tasks_must_list_dependencies_first_and_jobs_must_be_positive():
    with pytest.raises(ValueError, match=r"task 'b' depends on \['a'\]"):
        run_tasks([Task("b", "b", abs, (1,), deps=("a",)), Task("a", "a", abs, (1,))], 1, lambda r: None)
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        run_tasks(_tasks(), 0, lambda r: None)
    assert StopSuite.__mro__[1] is Exception


def test_verdict_reads_a_difference_against_its_standard_error():
    assert verdict(1.0, 0.2) == "agrees"
    assert verdict(-1.0, 0.2) == "reversed"
    assert verdict(0.3, 0.2) == "within seed noise"
    assert verdict(0.3, None).startswith("agrees (one seed")
    assert verdict(None, None) == "not measured"


def test_spearman_matches_the_rank_definition():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman([1, 2], [2, 1]) is None  # too few pairs
    with pytest.raises(ValueError, match="different lengths 2 and 3"):
        spearman([1, 2], [1, 2, 3])
