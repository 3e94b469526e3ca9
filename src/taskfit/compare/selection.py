"""Choosing honestly: the yardstick a grid ranks by, and the test score's confidence interval.

When one label dominates, accuracy rewards answering it always (86% ham: 0.86 for a model that learned
nothing), so the grid ranks by macro-F1 instead unless the user named a metric. The test score of a row is
reported with a bootstrap interval over test examples and seeds (predictions.jsonl holds every prediction).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from taskfit.compare.store import cell_folder
from taskfit.evaluation.ranking import Metric

IMBALANCED_SHARE = 0.6  # a majority label above this share of the labelled examples counts as imbalanced
BOOTSTRAP_SAMPLES = 1000


def majority_share(examples: list) -> tuple[str, float] | None:
    """(most frequent label, its share) among examples with a label, or None."""
    counts = Counter(getattr(e, "label", None) for e in examples)
    counts.pop(None, None)
    if not counts:
        return None
    label, n = counts.most_common(1)[0]
    return label, n / sum(counts.values())


def yardstick(metric: Metric, configured: str | None, pools, warnings: list[str] = ()) -> Metric:
    """macro-F1 in place of accuracy when the labels are imbalanced and the user named no metric; the
    returned metric's ``why`` says why (empty when nothing changed)."""
    if configured is not None or metric.key != "accuracy":
        return metric
    labelled = [*pools.train, *pools.dev]
    share = majority_share(labelled) or majority_share(pools.test)
    warned = any(w.startswith("balance.imbalanced") for w in warnings)
    if not warned and (share is None or share[1] <= IMBALANCED_SHARE):
        return metric
    why = (
        f"the labels are imbalanced ('{share[0]}' is {share[1]:.0%} of the labelled examples)"
        if share and share[1] > IMBALANCED_SHARE
        else "the data check found the labels imbalanced"
    )
    why += "; accuracy would reward always answering the majority label"
    return replace(Metric("macro_f1", "macro-F1", "accuracy", "accuracy", True), why=why)


def _read_predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def label_indices(rows: list[dict], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(gold, predicted) label indices of prediction rows ({gold, probs}): the prediction is the top label."""
    index = {label: i for i, label in enumerate(labels)}
    gold = np.array([index[r["gold"]] for r in rows])
    pred = np.array([index[max(r["probs"], key=r["probs"].get)] for r in rows])
    return gold, pred


def _score(
    gold: np.ndarray, pred: np.ndarray, n_labels: int, key: str, weight: np.ndarray | None = None
) -> float:
    """Accuracy or macro-F1 of label indices, each example counted ``weight`` times (default once). Written
    here: scikit-learn's scorers validate their input on every call, too slow inside a bootstrap."""
    w = np.ones(len(gold)) if weight is None else weight
    if key == "accuracy":
        return float((w * (gold == pred)).sum() / w.sum())
    right = gold == pred
    tp = np.bincount(gold[right], weights=w[right], minlength=n_labels)
    support = np.bincount(gold, weights=w, minlength=n_labels)
    predicted = np.bincount(pred, weights=w, minlength=n_labels)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_labels), where=denom > 0)
    return float(f1.mean())


def bootstrap_interval(
    out: Path,
    records: list[dict],
    key: str,
    labels: list[str],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """95% interval of a row's mean test score (accuracy or macro-F1), resampling seeds and, within them,
    the same test examples (the test set is shared). None when predictions are missing."""
    if key not in ("accuracy", "macro_f1"):
        return None
    index = {label: i for i, label in enumerate(labels)}
    runs = []
    for r in records:
        path = cell_folder(out, r) / "predictions.jsonl"
        if not path.exists():
            return None
        rows = _read_predictions(path)
        if not rows or any(row.get("gold") not in index or row.get("predicted") not in index for row in rows):
            return None
        runs.append(
            (np.array([index[x["gold"]] for x in rows]), np.array([index[x["predicted"]] for x in rows]))
        )
    if not runs or len({len(g) for g, _ in runs}) != 1:
        return None
    rng = np.random.default_rng(seed)
    n = len(runs[0][0])
    scores = []
    for _ in range(samples):
        picked = rng.integers(0, len(runs), len(runs))
        rows = rng.integers(0, n, n)
        scores.append(np.mean([_score(runs[i][0][rows], runs[i][1][rows], len(labels), key) for i in picked]))
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


def choose_on_resamples(
    gold: list[str],
    default: list[str],
    other: list[str],
    labels: list[str],
    key: str,
    samples: int = 1000,
    weight=None,
) -> dict:
    """``choose_non_default``'s rule for a score that is not a mean over examples (macro-F1), where there are
    no per-example differences, or for one whose examples are weighted: the gain on all the examples against
    one standard error of it, from a paired bootstrap over those examples (Koehn, 2004; seeded), each
    example counted ``weight`` times (``compare.prior``; default once). For unweighted accuracy it gives
    about the same standard error as the per-example paired differences. {chosen, gain, noise}. (Written
    here: scikit-learn has no paired bootstrap of a difference.)"""
    index = {label: i for i, label in enumerate(labels)}
    g, d, o = (np.array([index[x] for x in xs]) for xs in (gold, default, other))
    w = np.ones(len(g)) if weight is None else np.asarray(weight, dtype=float)
    n = len(labels)
    gain = _score(g, o, n, key, w) - _score(g, d, n, key, w)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(samples):
        rows = rng.integers(0, len(g), len(g))
        diffs.append(_score(g[rows], o[rows], n, key, w[rows]) - _score(g[rows], d[rows], n, key, w[rows]))
    noise = float(np.std(diffs, ddof=1))
    return {"chosen": bool(gain > 0 and gain > noise), "gain": float(gain), "noise": noise}
