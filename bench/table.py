"""Print a BENCHMARKS.md table from one or more compare output folders (their results.json).

Usage:  .venv/bin/python bench/table.py bench/results/all_mr [bench/results/smollm2_classifier_mr ...]
"""

import statistics
import sys

from taskfit.compare import load_results
from taskfit.compare.summary import fmt_mean_std


def main(folders: list[str]) -> None:
    print(
        "| strategy | backbone | accuracy | macro-F1 | seeds | trainable params (share) | fit s (median) "
        "| peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows, majority = [], None
    for folder in folders:
        results = load_results(folder)
        majority = majority or results["majority_baseline"]
        for r in results["strategies"]:
            cells = [
                c
                for c in results["cells"]
                if (c["strategy"], c["backbone"], c["shots"]) == (r["strategy"], r["backbone"], r["shots"])
                and c["status"] == "ok"
            ]
            rows.append((r, cells))
    rows.sort(key=lambda rc: -(rc[0]["accuracy_mean"] or 0))
    for r, cells in rows:
        fit = statistics.median(c["fit_seconds"] for c in cells) if cells else float("nan")
        share = r["trainable_params"] / r["total_params"] if r["total_params"] else 0
        print(
            f"| {r['strategy']} | {r['backbone']} | {fmt_mean_std(r['accuracy_mean'], r['accuracy_std'])} | "
            f"{fmt_mean_std(r['macro_f1_mean'], r['macro_f1_std'])} | {r['runs']} | "
            f"{r['trainable_params']:,} ({share:.2%}) | {fit:.1f} | {r['peak_rss_mb']:,.0f} |"
        )
    if majority:
        print(f"\nmajority-class baseline: {majority['accuracy']:.3f} (always '{majority['label']}')")


if __name__ == "__main__":
    main(sys.argv[1:])
