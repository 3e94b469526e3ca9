"""How far the grid's estimate of the time left was from the truth, from a saved console log of a run.

    taskfit compare 2>&1 | tee compare.log      # the default grid, on a quiet machine
    python bench/eta_accuracy.py compare.log     # the estimate after each third of the cells vs the real rest

Reads the ``[n/N] done ... | elapsed 3m12s, 28 left, about 7m05s left`` lines (not the live terminal line:
pipe the output, as above) and the last one's elapsed time as the end of the grid (the report takes seconds).
"""

from __future__ import annotations

import re
import sys

LINE = re.compile(r"^\[(\d+)/(\d+)\] .*\| elapsed ([0-9hms]+)(?:, \d+ left, about ([0-9hms]+) left)?")


def seconds(text: str) -> float:
    """'1h02m', '3m12s', '45s' -> seconds."""
    h = re.search(r"(\d+)h", text)
    m = re.search(r"(\d+)m(?!s)", text)
    s = re.search(r"(\d+)s", text)
    return sum(int(x.group(1)) * f for x, f in ((h, 3600), (m, 60), (s, 1)) if x)


def main(path: str) -> int:
    points = []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = LINE.match(line.strip())
        if m:
            left = seconds(m[4]) if m[4] else None
            points.append((int(m[1]), int(m[2]), seconds(m[3]), left))
    if not points:
        print(f"{path}: no '[n/N] done ... | elapsed' lines (was the output piped, not a terminal?)")
        return 1
    end = points[-1][2]
    total = points[-1][1]
    print(f"{total} cells, {end:.0f} s from the first start to the last cell's end")
    for done, _, elapsed, left in points:
        if left is None:
            continue
        real = end - elapsed
        error = (left - real) / real if real else 0.0
        mark = " <- after the first third" if done == -(-total // 3) else ""
        print(
            f"[{done}/{total}] at {elapsed:.0f} s: estimated {left:.0f} s left, really {real:.0f} s ({error:+.0%}){mark}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
