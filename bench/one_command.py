"""Issue 38's Done-when: the one command a user runs, on a user file drawn from a built-in dataset, timed, and
its pick checked on the rest of the data (never seen by the run).

For each draw: `taskfit init train.csv` (its estimate), then `taskfit compare train.csv` (wall time), then
every row's seed-0 model (trained on all N labels, as final/ is) and final/ predict a fixed sample of the
unseen examples. Regret: final/'s score minus the best row's, in the grid's ranking metric.

Usage:  python bench/one_command.py DATASET N DRAW [--out DIR] [--unseen 500]
Prints one JSON line (also written to OUT/bench.json).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from user_files import draw, write  # noqa: E402


def score(run_dir: Path, examples, labels) -> dict:
    from taskfit.evaluation.metrics import classification_metrics
    from taskfit.serving.predictor import Predictor

    predictor = Predictor.load(run_dir, device="cpu")
    served = []
    for start in range(0, len(examples), 64):
        served += predictor.predict(examples[start : start + 64])
    m = classification_metrics([e.label for e in examples], [r["label"] for r in served], labels)
    # the scores too (bench.json's "scores"): ensembles of rows can be scored on unseen texts afterwards
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "scores": [r["scores"] for r in served]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("n", type=int)
    p.add_argument("draw", type=int)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--unseen", type=int, default=500)
    p.add_argument(
        "--wall", type=int, default=None, help="score a finished run again (its measured wall time in s)"
    )
    a = p.parse_args()
    out = a.out or Path("bench/results/one_command") / f"{a.dataset}-{a.n}-{a.draw}"
    out.mkdir(parents=True, exist_ok=True)
    train, rest = draw(a.dataset, a.n, a.draw)
    write(out / "train.csv", train)
    taskfit = [sys.executable, "-m", "taskfit"]
    init = subprocess.run(  # the estimate of the code that ran (rerun with --wall: today's code's)
        [*taskfit, "init", "train.csv", "--force"], cwd=out, capture_output=True, text=True, check=True
    )
    estimate = next(line for line in (init.stdout + init.stderr).splitlines() if "estimated time" in line)
    started = time.perf_counter()
    if a.wall is None:
        with (out / "compare.log").open("w") as log:
            subprocess.run([*taskfit, "compare", "train.csv"], cwd=out, stdout=log, stderr=log, check=True)
    wall = time.perf_counter() - started if a.wall is None else a.wall
    run = out / "runs" / "train"
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    key = "macro_f1" if "macro" in results["strategies"][0]["ranked_by"] else "accuracy"
    labels = sorted({e.label for e in train})
    unseen = random.Random(0).sample(rest, min(a.unseen, len(rest)))
    rows = {}
    for cell in results["cells"]:
        if cell["status"] == "ok" and cell["seed"] in (0, None):
            rows[f"{cell['strategy']} ({cell['backbone']})"] = score(run / cell["cell"], unseen, labels)
    final = score(run, unseen, labels) if (run / "final" / "model").exists() else None
    best = max(rows, key=lambda r: rows[r][key])
    record = {
        "dataset": a.dataset,
        "n": a.n,
        "draw": a.draw,
        "shares": {lab: sum(e.label == lab for e in train) for lab in labels},
        "wall_s": round(wall),
        "unseen": len(unseen),
        "estimate": re.sub(r"^.*estimated time: ", "", estimate),
        "ranked_by": key,
        "final_row": (results.get("final") or {}).get("row"),
        "final_backbone": (results.get("final") or {}).get("backbone"),
        "final": final,
        "best_row": best,
        "best": rows[best],
        "regret": None if final is None else round(final[key] - rows[best][key], 4),
        "rows": rows,
        "stopped": [s["strategy"] for s in results["strategies"] if s.get("stopped")],
    }
    scores = {name: r.pop("scores") for name, r in [*rows.items(), *([("final/", final)] if final else [])]}
    record["gold"] = [e.label for e in unseen]
    (out / "unseen_scores.json").write_text(json.dumps({"gold": record.pop("gold"), "scores": scores}))
    (out / "bench.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
