"""Continual learning: one encoder trained over a sequence of tasks, every task evaluated after every stage
(``taskfit continual CONFIG.yaml``)."""

from taskfit.lazy import lazy_exports

__getattr__ = lazy_exports(
    __name__,
    {
        "continual_metrics": "taskfit.continual.metrics",
        "load_continual_model": "taskfit.continual.model",
        "run_continual": "taskfit.continual.runner",
    },
)
__all__ = ["continual_metrics", "load_continual_model", "run_continual"]
