"""Run a list of dependent tasks on ``jobs`` worker processes (or inline when ``jobs == 1``).

The suite's work is a small dependency graph: the teacher fine-tune before
every distillation run, a seed's teacher cache before the runs that read it,
SSKD's teacher head before the SSKD runs. Tasks are started in list order as
soon as their dependencies have succeeded and a worker is free; a task whose
dependency failed is skipped with the reason.

On this kind of machine (2 cores, tiny networks) two single-threaded runs side
by side train faster than one run with two threads, and far faster when other
work shares the cores (two OpenMP threads then wait on each other at every
layer).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence


@dataclass(frozen=True)
class Task:
    """One unit of work; ``fn`` must be a module-level function (it may run in another process)."""

    key: str
    label: str
    fn: Callable[..., Any]
    args: tuple = ()
    deps: tuple[str, ...] = ()


@dataclass
class TaskResult:
    """What became of a task: its return value, its error, or why it never ran."""

    task: Task
    value: Any = None
    error: Optional[BaseException] = None
    skipped: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None


class StopSuite(Exception):
    """Raised by a task (or a callback) to stop starting new tasks; running ones finish first."""


def _check(tasks: Sequence[Task]) -> None:
    keys = [t.key for t in tasks]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"task keys must be unique, repeated: {duplicates}")
    seen: set[str] = set()
    for task in tasks:
        missing = [d for d in task.deps if d not in seen]
        if missing:
            raise ValueError(f"task {task.key!r} depends on {missing}, which do not come before it in the list")
        seen.add(task.key)


def run_tasks(
    tasks: Sequence[Task],
    jobs: int,
    on_done: Callable[[TaskResult], None],
    *,
    stop_on_failure: bool = False,
    stop_types: tuple[type[BaseException], ...] = (StopSuite,),
) -> tuple[dict[str, TaskResult], Optional[BaseException]]:
    """Run ``tasks`` (dependencies before dependents in the list) on ``jobs`` workers.

    ``on_done`` is called in this process for every task as it ends (also for skipped
    ones). An error of a type in ``stop_types`` (or any error with
    ``stop_on_failure``, or Ctrl-C) stops new starts; the running tasks finish and the
    rest are skipped. Returns every task's result and the stopping error, if any.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    _check(tasks)
    results: dict[str, TaskResult] = {}
    stopped: Optional[BaseException] = None

    def finish(result: TaskResult) -> None:
        nonlocal stopped
        results[result.task.key] = result
        error = result.error
        if error is not None and stopped is None and (isinstance(error, stop_types) or stop_on_failure):
            stopped = error
        on_done(result)

    def blocked_by(task: Task) -> Optional[str]:
        for dep in task.deps:
            if dep in results and not results[dep].ok:
                return dep
        return None

    pending = list(tasks)
    if jobs == 1:
        for task in pending:
            if stopped is not None:
                finish(TaskResult(task, skipped=f"the suite stopped: {stopped}"))
                continue
            dep = blocked_by(task)
            if dep is not None:
                finish(TaskResult(task, skipped=f"{dep} did not succeed"))
                continue
            try:
                finish(TaskResult(task, value=task.fn(*task.args)))
            except KeyboardInterrupt as err:
                stopped = stopped or err
                finish(TaskResult(task, error=err))
            except Exception as err:  # noqa: BLE001 - recorded; the caller decides what a failure means
                finish(TaskResult(task, error=err))
        return results, stopped

    running: dict[Future, Task] = {}
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        try:
            while pending or running:
                for task in list(pending):
                    if stopped is not None:
                        pending.remove(task)
                        finish(TaskResult(task, skipped=f"the suite stopped: {stopped}"))
                        continue
                    dep = blocked_by(task)
                    if dep is not None:
                        pending.remove(task)
                        finish(TaskResult(task, skipped=f"{dep} did not succeed"))
                    elif len(running) < jobs and all(d in results for d in task.deps):
                        pending.remove(task)
                        try:
                            running[pool.submit(task.fn, *task.args)] = task
                        except BrokenProcessPool as err:  # a worker died (killed, out of memory): stop cleanly
                            stopped = stopped or err
                            finish(TaskResult(task, error=err))
                if not running:
                    continue
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    error = future.exception()
                    finish(TaskResult(task, value=None if error else future.result(), error=error))
        except KeyboardInterrupt as err:
            # the workers got the same Ctrl-C: their trainers checkpoint and stop; wait for them
            stopped = stopped or err
            for future, task in running.items():
                error = future.exception()
                finish(TaskResult(task, value=None if error else future.result(), error=error))
            for task in pending:
                finish(TaskResult(task, skipped=f"the suite stopped: {stopped!r}"))
    return results, stopped
