"""Metrics and reports."""

from taskfit.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {"classification_metrics": "taskfit.evaluation.metrics"})
__all__ = ["classification_metrics"]
