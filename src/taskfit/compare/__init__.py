"""Grid comparisons: strategies x backbones x shots x seeds on the same splits, resumable, with a report."""

from taskfit.lazy import lazy_exports

__getattr__ = lazy_exports(
    __name__,
    {
        "load_results": "taskfit.compare.engine",
        "run_experiment": "taskfit.compare.engine",
        "plan_cells": "taskfit.compare.plan",
        "uses_shots": "taskfit.compare.plan",
    },
)
__all__ = ["load_results", "plan_cells", "run_experiment", "uses_shots"]
