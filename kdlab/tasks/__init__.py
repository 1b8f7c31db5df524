"""Tasks: what differs between classification and detection, behind one small interface.

The trainer asks the run's :class:`~kdlab.tasks.base.Task` (chosen by the config key
``task``) to build the data, the networks and the method, to count what a training
step saw, and to evaluate; it knows nothing else about the task.
"""

from kdlab.tasks.base import EvalParts, Task, get_task, task_names

__all__ = ["EvalParts", "Task", "get_task", "task_names"]
