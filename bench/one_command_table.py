"""A Markdown table of bench/one_command.py's JSON lines (one per draw).

Usage:  python bench/one_command_table.py RESULTS.jsonl
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.startswith("{")]
    print(
        "| file | labels (shares) | wall | init's estimate | final/ row | final/ on unseen | best row on unseen | regret | stopped by the race |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        key = r["ranked_by"]
        shares = ", ".join(f"{k} {v}" for k, v in r["shares"].items())
        final = "—" if r["final"] is None else f"{r['final'][key]:.3f}"
        print(
            f"| {r['dataset']} {r['n']} draw {r['draw']} | {shares} | {r['wall_s'] // 60}m{r['wall_s'] % 60:02d}s | "
            f"{r['estimate']} | {r['final_row']} ({r['final_backbone']}) | {final} | "
            f"{r['best_row']} {r['best'][key]:.3f} | {r['regret']:+.3f} | {', '.join(r['stopped']) or 'none'} |"
        )
    regrets = [r["regret"] for r in rows if r["regret"] is not None]
    if regrets:
        print(
            f"\nmean regret {sum(regrets) / len(regrets):+.3f} over {len(regrets)} draws; worst {min(regrets):+.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
