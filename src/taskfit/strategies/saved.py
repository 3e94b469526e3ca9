"""Where a saved run's model is: one rule for predict, serve, export and ``from:`` updates."""

from __future__ import annotations

from pathlib import Path

from taskfit.errors import TaskfitError
from taskfit.strategies.base import STRATEGY_FILE

# a model folder itself, a grid cell (its model/), a grid (the final model refitted on every label)
MODEL_PLACES = (".", "model", "final/model")


def find_model_dir(path: str | Path, hint: str = "") -> Path:
    """The folder under ``path`` that holds the saved strategy (MODEL_PLACES, in that order). ``hint``: what
    the caller expected, added to the error."""
    path = Path(path)
    for place in MODEL_PLACES:
        candidate = path if place == "." else path / place
        if (candidate / STRATEGY_FILE).exists():
            return candidate
    raise TaskfitError(
        f"{path} is not a saved run: no {STRATEGY_FILE} in it, in its model/ or in its final/model/ "
        f"(is the run finished?){hint}"
    )
