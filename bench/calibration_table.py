"""BENCHMARKS.md table for the calibration / order-ensemble runs (issue 11) from a compare output folder.

Usage:  .venv/bin/python bench/calibration_table.py bench/results/calibration_mr
Columns: accuracy mean ± std over seeds, the predicted-label distribution per seed (as shares of the most
frequently predicted label), the share of predictions equal to the last demonstration's label, the mean
per-order accuracy spread (order ensembles), and prediction throughput.
"""

import statistics
import sys

from taskfit.compare import load_results
from taskfit.compare.store import open_existing, rows
from taskfit.compare.summary import fmt_mean_std


def main(folder: str) -> None:
    results = load_results(folder)
    cells = [r for r in rows(open_existing(folder)) if r["status"] == "ok"]
    print(
        "| strategy | accuracy | top predicted label's share, per seed | = last demo's label, per seed | per-order spread | ex/s |"
    )
    print("|---|---|---|---|---|---|")
    for group in results["strategies"]:
        mine = sorted(
            (c for c in cells if c["strategy"] == group["strategy"]),
            key=lambda c: (c["seed"] is None, c["seed"]),
        )
        metrics = [c["metrics"] for c in mine]
        accuracy = fmt_mean_std(group["accuracy_mean"], group["accuracy_std"])
        top = ", ".join(
            f"{max(m['predicted_distribution'].values()) / m['n']:.2f}"
            for m in metrics
            if m.get("predicted_distribution")
        )
        last = ", ".join(
            f"{m['diagnostics']['share_predicted_as_last_demonstration']:.2f}"
            for m in metrics
            if m.get("diagnostics", {}).get("share_predicted_as_last_demonstration") is not None
        )
        spreads = [
            m["diagnostics"]["per_order_spread"]
            for m in metrics
            if "per_order_spread" in m.get("diagnostics", {})
        ]
        spread = f"{statistics.mean(spreads):.3f}" if spreads else "—"
        speed = statistics.mean(m["predict_examples_per_s"] for m in metrics)
        print(f"| {group['strategy']} | {accuracy} | {top} | {last or '—'} | {spread} | {speed:.1f} |")
    majority = results.get("majority_baseline")
    if majority:
        print(f"\nmajority-class baseline: {majority['accuracy']:.3f} (always '{majority['label']}')")


if __name__ == "__main__":
    main(sys.argv[1])
