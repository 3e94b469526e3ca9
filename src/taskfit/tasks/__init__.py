"""Tasks: one object per task owning what differs by task (``get_task``), and the modules of the span tasks
(relation, extractive-qa: their reader, encoding, model and strategies).

``get_task`` imports only the small task-object module; torch-heavy code is imported inside its methods.
"""

from __future__ import annotations

import importlib

from taskfit.errors import TaskfitError, did_you_mean
from taskfit.tasks.base import Task
from taskfit.tasks.catalog import CATALOG, TASK_NAMES


def get_task(name: str) -> Task:
    """The task object of a task name (as in a config's ``task:``)."""
    if name not in CATALOG:
        raise TaskfitError(
            f"unknown task '{name}'; tasks: {', '.join(TASK_NAMES)}." + did_you_mean(name, TASK_NAMES)
        )
    module, _, attr = CATALOG[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)


def load_pools(cfg, task: str = "classification"):
    """All examples of a data config before k-shot sampling, read the way the task reads them."""
    return get_task(task).load_pools(cfg)


__all__ = ["TASK_NAMES", "Task", "get_task", "load_pools"]
