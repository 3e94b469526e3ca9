"""Stratified, seeded k folds over a labelled pool (cross-validated selection, ``data.selection: cv``)."""

from __future__ import annotations

import random
from collections import defaultdict


def stratified_folds(labels: list[str], k: int, seed: int) -> list[list[int]]:
    """``k`` disjoint folds of indices into ``labels`` covering every index: each label's examples are
    shuffled (seeded) and dealt round-robin, continuing where the previous label stopped, so fold sizes
    differ by at most one and every label is in every fold when it has at least ``k`` examples."""
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, not {k}")
    if len(labels) < k:
        raise ValueError(f"{len(labels)} labelled examples cannot make {k} folds")
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    position = 0
    for label in sorted(by_label):  # sorted: the same folds whatever order the labels first appear in
        members = by_label[label]
        rng.shuffle(members)
        for i in members:
            folds[position % k].append(i)
            position += 1
    return [sorted(f) for f in folds]


def fold_count(labels: list[str], folds: int) -> int:
    """``folds``, fewer when a label has fewer examples than that, at least 2. A label with one example
    does not lower it: it can only ever be in one fold."""
    counts = [labels.count(lab) for lab in set(labels)]
    smallest = min((c for c in counts if c > 1), default=2)
    return max(2, min(folds, smallest))
