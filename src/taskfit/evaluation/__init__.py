"""Metrics and reports."""

from taskfit.evaluation.metrics import classification_metrics

__all__ = ["classification_metrics"]
