"""Task objects (taskfit.tasks): every task provides the whole interface, and no code outside the task
modules compares task names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from taskfit.errors import TaskfitError
from taskfit.tasks import TASK_NAMES, Task, get_task

SRC = Path(__file__).resolve().parents[1] / "src" / "taskfit"
# what every task must implement itself (the base class only raises NotImplementedError for these)
OWN = ("load_pools", "metric", "evaluate", "serve")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_task_provides_the_whole_interface(name):
    from taskfit.compare.summary import Metric
    from taskfit.registry import REGISTRY

    task = get_task(name)
    assert isinstance(task, Task) and task.name == name
    for method in OWN:
        assert getattr(type(task), method) is not getattr(Task, method), f"{name} lacks {method}"
    for method in (
        "dev_score",
        "headline",
        "report_notes",
        "report_samples",
        "recommendation_notes",
        "check_prompt",
        "check_export",
        "inspect_files",
    ):
        assert callable(getattr(task, method))
    assert isinstance(task.k_unit, str) and task.k_unit
    assert task.exporter in ("classifier", "causal-lm", None)
    assert isinstance(task.per_class, bool) and isinstance(task.generates, bool)
    keys = task.metric_keys
    assert keys and task.metric().key == keys[0]  # the first valid key is the default ranking
    for key in keys:
        metric = task.metric(key)
        assert isinstance(metric, Metric) and metric.key == key
    assert isinstance(task.report_notes(), list)
    assert REGISTRY.entries(name), f"no strategies registered for {name}"


def test_unknown_task_names_the_tasks():
    with pytest.raises(TaskfitError, match="unknown task 'nerr'.*Did you mean 'ner'"):
        get_task("nerr")


def test_getting_a_task_does_not_import_torch():
    code = (
        "import sys\nfrom taskfit.tasks import TASK_NAMES, get_task\n"
        "[(get_task(n).metric_keys, get_task(n).k_unit) for n in TASK_NAMES]\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=None)


def test_ner_metric_has_an_f1_column_per_entity_type():
    metric = get_task("ner").metric(None, ["LOC", "PER"])
    assert ("f1_LOC", "F1 LOC") in metric.extra and metric.k_unit == "training sentences"


# A comparison of a task (task, config.task, card.task, ...) against a task name literal.
NAMES = "|".join(re.escape(n) for n in TASK_NAMES)
CHAINS = re.compile(
    rf"""\btask\s*(==|!=)\s*["']({NAMES})["']"""  # task == "ner"
    rf"""|["']task["'][^)]*\)\s*(==|!=)\s*["']({NAMES})["']"""  # saved.get("task", ...) != "classification"
    rf"""|["']({NAMES})["']\s*(==|!=)\s*[\w.]*\btask\b"""  # "ner" == task
    rf"""|\btask\s+(not\s+)?in\s*[(\[{{]\s*["']({NAMES})["']"""  # task in ("relation", ...)
)
# Files that may compare task names: the task objects themselves and the config package (which validates
# `task:`).
ALLOWED = ("tasks/", "config")


def test_no_task_name_chains_outside_the_task_modules():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(ALLOWED):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if CHAINS.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "ask the task object (taskfit.tasks.get_task) instead:\n" + "\n".join(found)


def test_the_chain_pattern_catches_the_forms_it_is_for():
    for line in (
        'if task == "ner":',
        "if config.task != 'generation':",
        'if task in ("relation", "x"):',
        'ner = getattr(pools, "task", "") == "ner"',
        'if saved.get("task", "classification") != "classification":',
    ):
        assert CHAINS.search(line), line
    # not a task name: asyncio's task in serving/batching.py, or a lookup by variable
    for line in ("if self.task is not None and not self.task.done():", "if task not in self.heads:"):
        assert not CHAINS.search(line), line
