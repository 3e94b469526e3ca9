"""Issue 18's done-when figures from finished `taskfit compare` run folders (bench/configs/truefew_*.yaml).

For each run: every row's test score (mean ± std over seeds) and its selection score, the row recommended
without test labels, its selection regret (chosen row's test score minus the best row's), and the ensemble
rows against the best single row. Reads results.json only.

Usage:  python bench/truefew_table.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(mean, std) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {std or 0:.3f}"


def summarize(run: Path) -> None:
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    rows = [r for r in results["strategies"] if r.get("runs")]
    metric = rows[0].get("ranked_by", "accuracy") if rows else "accuracy"
    key = "macro_f1" if "f1" in str(metric) else "accuracy"
    print(f"## {results['name']} (ranked by {metric}; test column: {key})\n")
    print("| row | K | seeds | test | selection score (CV mean) | chosen |")
    print("|---|---|---|---|---|---|")
    single = []
    for r in rows:
        name = f"{r['strategy']} ({r['backbone']})"
        test = (r.get(f"{key}_mean"), r.get(f"{key}_std"))
        single.append((name, r["shots"], test, r.get("selection_mean")))
        print(
            f"| {name} | {r['shots']} | {r['runs']} | {fmt(*test)} | "
            f"{fmt(r.get('selection_mean'), r.get('selection_std'))} | {'yes' if r.get('chosen') else ''} |"
        )
    for e in results.get("ensembles", []):
        name = f"{e['strategy']} ({e['backbone']})"
        print(
            f"| {name} | {e['shots']} | {e.get('runs')} | {fmt(e.get(f'{key}_mean'), e.get(f'{key}_std'))} | "
            f"{fmt(e.get('selection_mean'), e.get('selection_std'))} | (ensemble) |"
        )
    top_k = max(int(s[1]) for s in single if str(s[1]).isdigit())
    # the report's candidates: the largest K and the K=0 rows (compare/summary.py _at_reference)
    at_k = [s for s in single if str(s[1]) in (str(top_k), "0") and s[3] is not None] or single
    chosen = max(at_k, key=lambda s: s[3] if s[3] is not None else -1)
    best = max(at_k, key=lambda s: s[2][0])
    print(
        f"\nrecommended without test labels: {chosen[0]} test {fmt(*chosen[2])}; best on test: {best[0]} "
        f"{fmt(*best[2])}; **regret {chosen[2][0] - best[2][0]:+.3f}**"
    )
    ensembles = results.get("ensembles", [])
    best_single = max(s[2][0] for s in single)
    for e in ensembles:
        name = f"{e['strategy']} ({e['backbone']})"
        value = e.get(f"{key}_mean")
        # a seed ensemble of a K-shot grid on a built-in dataset averages fits on different samples (5x the
        # labels of one seed); the cross-strategy ensemble uses one seed's labels
        kind = "seed ensemble: different samples per seed" if "seed ensemble" in name else "cross-strategy"
        print(
            f"{name} [{kind}]: {value:.3f} vs best single row {best_single:.3f}: {value - best_single:+.3f}"
        )
    print("\nthe report's recommendation:\n" + "\n".join(results["recommendation"]) + "\n")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        summarize(Path(arg))
