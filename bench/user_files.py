"""Turn a built-in dataset into the files a user would have: N labelled texts drawn at the data's own label
shares (or with one label's share set), and the rest of the data as an unseen test file.

Usage:  python bench/user_files.py DATASET N DRAW OUT_DIR [--share LABEL=0.8]
Writes OUT_DIR/train.csv (text,label) and OUT_DIR/unseen.csv (every other example of train+dev+test).
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from taskfit.data.catalog import load_builtin


def draw(dataset: str, n: int, seed: int, share: dict[str, float] | None = None):
    ds = load_builtin(dataset)
    every = [*ds.train, *ds.dev, *ds.test]
    rng = random.Random(f"{dataset}/{n}/{seed}")
    order = every[:]
    rng.shuffle(order)
    if not share:
        chosen = order[:n]
    else:
        ((label, fraction),) = share.items()
        want = round(n * fraction)
        inside = [e for e in order if e.label == label][:want]
        outside = [e for e in order if e.label != label][: n - want]
        chosen = inside + outside
        rng.shuffle(chosen)
    taken = {id(e) for e in chosen}
    return chosen, [e for e in every if id(e) not in taken]


def draw_balanced(dataset: str, n: int, seed: int):
    """N labelled texts, as many of every label as the data allows (n / labels each), and the rest."""
    ds = load_builtin(dataset)
    every = [*ds.train, *ds.dev, *ds.test]
    rng = random.Random(f"{dataset}/{n}/{seed}/balanced")
    order = every[:]
    rng.shuffle(order)
    labels = sorted({e.label for e in every})
    chosen = [e for label in labels for e in [x for x in order if x.label == label][: n // len(labels)]]
    rng.shuffle(chosen)
    taken = {id(e) for e in chosen}
    return chosen, [e for e in every if id(e) not in taken]


def write(path: Path, examples) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for e in examples:
            w.writerow([e.text, e.label])


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("n", type=int)
    p.add_argument("draw", type=int)
    p.add_argument("out", type=Path)
    p.add_argument("--share", default=None, help="LABEL=FRACTION: that label's share of the N")
    a = p.parse_args()
    share = None
    if a.share:
        label, value = a.share.split("=")
        share = {label: float(value)}
    train, rest = draw(a.dataset, a.n, a.draw, share)
    a.out.mkdir(parents=True, exist_ok=True)
    write(a.out / "train.csv", train)
    write(a.out / "unseen.csv", rest)
    from collections import Counter

    print(a.out, "train", len(train), dict(Counter(e.label for e in train)), "unseen", len(rest))
