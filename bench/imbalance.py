"""Issue 36's benchmark: the trained rows on an imbalanced user file, before (unweighted, no decision
correction) and after (class_weight: balanced and the correction, the defaults), and on a file of the same
size drawn balanced, each row's model (fitted on all N labels, seed 0) scored on unseen texts.

Usage:  python bench/imbalance.py DATASET N DRAW [--share LABEL=0.8] [--variants before,after,balanced]
        [--out DIR] [--unseen 500]
Appends one JSON line per (variant, row) to OUT/results.jsonl: macro-F1 and accuracy on the unseen texts, the
majority-class predictor's macro-F1 there, and the row's cross-validated score.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from one_command import score  # noqa: E402
from user_files import draw, draw_balanced, write  # noqa: E402

ROWS = ("head-finetune", "lora", "contrastive")


def config(variant: str) -> dict:
    before = variant == "before"
    weight = {"class_weight": "none"} if before else {}
    return {
        "name": variant,
        "data": {"train": "train.csv", "shots": "all"},
        "seeds": [0],
        "race": False,
        "final": "none",
        "correction": not before,
        "strategies": [{"name": name, "backbone": "minilm", **weight} for name in ROWS],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("n", type=int)
    p.add_argument("draw", type=int)
    p.add_argument("--share", default=None, help="LABEL=FRACTION for the imbalanced file (default: natural)")
    p.add_argument("--variants", default="before,after,balanced")
    p.add_argument("--out", type=Path, default=Path("bench/results/imbalance"))
    p.add_argument("--unseen", type=int, default=500)
    a = p.parse_args()
    share = None
    if a.share:
        label, value = a.share.split("=")
        share = {label: float(value)}
    for variant in a.variants.split(","):
        balanced = variant == "balanced"
        train, rest = (
            draw_balanced(a.dataset, a.n, a.draw) if balanced else draw(a.dataset, a.n, a.draw, share)
        )
        folder = a.out / f"{a.dataset}-{a.n}-{a.draw}-{variant}"
        folder.mkdir(parents=True, exist_ok=True)
        write(folder / "train.csv", train)
        (folder / "grid.yaml").write_text(yaml.safe_dump(config("after" if balanced else variant)))
        with (folder / "compare.log").open("w") as log:
            subprocess.run(
                [sys.executable, "-m", "taskfit", "compare", "grid.yaml"],
                cwd=folder,
                stdout=log,
                stderr=log,
                check=True,
            )
        run = folder / "runs" / ("after" if balanced else variant)
        results = json.loads((run / "results.json").read_text(encoding="utf-8"))
        labels = sorted({e.label for e in train})
        unseen = [e for e in random.Random(0).sample(rest, min(a.unseen, len(rest))) if e.label in labels]
        majority = Counter(e.label for e in train).most_common(1)[0][0]
        from taskfit.evaluation.metrics import classification_metrics

        floor = classification_metrics([e.label for e in unseen], [majority] * len(unseen), labels)[
            "macro_f1"
        ]
        for cell in results["cells"]:
            if cell["status"] != "ok":
                continue
            m = score(run / cell["cell"], unseen, labels)
            metrics = json.loads((run / cell["cell"] / "metrics.json").read_text(encoding="utf-8"))
            correction = (metrics.get("cv") or {}).get("correction") or {}
            record = {
                "dataset": a.dataset,
                "n": a.n,
                "draw": a.draw,
                "variant": variant,
                "shares": dict(Counter(e.label for e in train)),
                "row": cell["strategy"],
                "macro_f1": round(m["macro_f1"], 4),
                "accuracy": round(m["accuracy"], 4),
                "majority_macro_f1": round(floor, 4),
                "cv_macro_f1": metrics.get("dev_macro_f1"),
                "correction": correction.get("applied"),
                "unseen": len(unseen),
            }
            with (a.out / "results.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
