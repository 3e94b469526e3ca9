"""Continual learning: one encoder trained over a sequence of tasks, every task evaluated after every stage
(``taskfit continual CONFIG.yaml``)."""

from taskfit.continual.metrics import continual_metrics
from taskfit.continual.model import load_continual_model
from taskfit.continual.runner import run_continual

__all__ = ["continual_metrics", "load_continual_model", "run_continual"]
