"""A stand-in for a file of long documents (news articles are not among the packaged data): N rows of one of
the five largest trec answer types each, every row 40 questions of that type joined (~540 tokens).

Usage:  python bench/long_texts.py OUT.csv [--rows 50]
"""

from __future__ import annotations

import argparse
import csv
import random

from taskfit.data.catalog import load_builtin

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--rows", type=int, default=50)
    a = p.parse_args()
    ds = load_builtin("trec")
    by: dict[str, list[str]] = {}
    for e in [*ds.train, *ds.dev, *ds.test]:
        by.setdefault(e.label, []).append(e.text)
    labels = sorted(by, key=lambda lab: -len(by[lab]))[:5]
    rng = random.Random(0)
    rows = [
        {"text": " ".join(rng.sample(by[labels[i % 5]], 40)), "label": labels[i % 5]} for i in range(a.rows)
    ]
    rng.shuffle(rows)
    with open(a.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
