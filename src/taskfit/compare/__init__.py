"""Grid comparisons: strategies x backbones x shots x seeds on the same splits, resumable, with a report."""

from taskfit.compare.engine import load_results, run_experiment
from taskfit.compare.plan import plan_cells, uses_shots

__all__ = ["load_results", "plan_cells", "run_experiment", "uses_shots"]
