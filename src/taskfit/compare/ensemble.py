"""Weights of a cross-strategy ensemble, fitted on out-of-fold predictions (``data.selection: cv``).

Every labelled example has exactly one prediction per row, made by the fold model that did not train on it,
so the weights are fitted on predictions no label influenced twice. Greedy forward selection with
replacement (Caruana et al., 2004): add the row that most improves the averaged probabilities' accuracy,
``rounds`` times; the weights are how often each row was added. (Grid rows are not built from it yet.)
"""

from __future__ import annotations

import numpy as np


def ensemble_weights(oof: dict[str, list[dict]], labels: list[str], rounds: int = 20) -> dict[str, float]:
    """{row: weight} summing to 1, from each row's out-of-fold records ({gold, probs}) over the same pool."""
    rows = list(oof)
    golds = [[r["gold"] for r in oof[row]] for row in rows]
    if not rows or any(g != golds[0] for g in golds):
        raise ValueError("out-of-fold predictions must cover the same labelled examples in the same order")
    gold = np.array([labels.index(g) for g in golds[0]])
    probs = {row: np.array([[r["probs"][lab] for lab in labels] for r in oof[row]]) for row in rows}
    counts = dict.fromkeys(rows, 0)
    total = np.zeros((len(gold), len(labels)))
    for step in range(1, rounds + 1):
        scores = {row: float(((total + probs[row]) / step).argmax(1).__eq__(gold).mean()) for row in rows}
        best = max(rows, key=lambda row: (scores[row], -rows.index(row)))  # ties: the earlier (better) row
        counts[best] += 1
        total += probs[best]
    return {row: n / rounds for row, n in counts.items()}
