"""What a leaderboard ranks by: a task's ranking metric and its columns (each task object builds its own)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """What a task's leaderboard ranks by (higher is better), its second column, and further columns."""

    key: str
    label: str
    second: str
    second_label: str
    proportion: bool  # a share of test examples (0-1): a binomial sampling error exists for one seed
    extra: tuple[tuple[str, str], ...] = ()  # (key, column label)
    lower_is_better: bool = False  # perplexity
    unit_interval: bool = False  # a 0-1 corpus score (entity F1): 3 decimals, though not a proportion
    dev_key: str | None = None  # what the training log records per epoch on dev, when not accuracy/loss
    k_unit: str = "per class"  # what K counts: "K=16 per class", "K=64 training pairs", ...
    why: str = ""  # why this metric ranks when taskfit chose it over the task's default (imbalanced labels)

    def ranked(self, value: float | None) -> float:
        """A sort key where larger is better; a missing value ranks last."""
        if value is None:
            return -math.inf
        return -value if self.lower_is_better else value


def ranked_by(key: str, columns: dict[str, str], order: list[str], more=(), **options) -> Metric:
    """A corpus-score metric ranked by ``key``: the next of ``order`` is the second column, the rest (and
    ``more``) follow."""
    others = [k for k in order if k != key]
    extra = (*((k, columns[k]) for k in others[1:]), *more)
    return Metric(key, columns[key], others[0], columns[others[0]], False, extra, **options)


def shots_order(shots: str) -> float:
    """K as a sort key: "all" after every number."""
    return math.inf if shots == "all" else float(shots)
