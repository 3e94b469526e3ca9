"""Print a BENCHMARKS.md table from an experiment folder's results.json.

Usage:  .venv/bin/python bench/table.py bench/results/encoder_mr
"""

import sys

from taskfit.compare import load_results


def main(folder: str) -> None:
    results = load_results(folder)
    print("| strategy | accuracy | macro-F1 | seeds | trainable params (share) | fit s (median) |")
    print("|---|---|---|---|---|---|")
    for r in results["strategies"]:
        cells = [c for c in results["cells"] if c["strategy"] == r["strategy"] and c["status"] == "ok"]
        fits = sorted(c["fit_seconds"] for c in cells)
        median = fits[len(fits) // 2] if fits else float("nan")
        share = r["trainable_params"] / r["total_params"] if r["total_params"] else 0
        print(
            f"| {r['strategy']} | {r['accuracy']} | {r['macro_f1']} | {r['runs']} | "
            f"{r['trainable_params']:,} ({share:.2%}) | {median:.1f} |"
        )
    print(f"\nmajority-class baseline: {results['majority_baseline']['accuracy']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
