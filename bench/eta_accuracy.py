"""How far the grid's estimate of the time left was from the truth, from a saved console log of a run.

    taskfit compare 2>&1 | tee compare.log      # the default grid, on a quiet machine
    python bench/eta_accuracy.py compare.log     # the estimate after each third of the cells vs the real rest
    PYTHONPATH=src python bench/eta_accuracy.py --replay compare.log   # today's estimator on that run's cells

``--replay`` feeds the log's cell starts and durations (``N s in all``) to ``taskfit.progress.estimate_left``
with 2 workers, as the engine does, so an estimator change can be measured on a recorded run without rerunning
it (on the same run it reproduces the printed estimates of the code that ran).

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
    return _print(points)


START = re.compile(r"^\s+start\s+(.*)$")
DONE = re.compile(r"^\[(\d+)/(\d+)\] done\s+(.*?): .*?(\d+) s in all\) \| elapsed ([0-9hms]+)")


def _group(cell: str) -> tuple[str, str]:
    """'lora | minilm | K=8 | seed 0' -> ('lora/minilm', '8'), the engine's (group, K)."""
    parts = [p.strip() for p in cell.split("|")]
    return f"{parts[0]}/{parts[1]}", parts[2].removeprefix("K=")


def replay(path: str, workers: int = 2) -> int:
    from taskfit.progress import estimate_left

    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    pending = [_group(m[1].strip()) for line in lines if (m := START.match(line))]
    running: dict[str, float] = {}
    finished: list[tuple[str, str, float]] = []
    points, now = [], 0.0
    for line in lines:
        if m := START.match(line):
            running[m[1].strip()] = now
            pending.remove(_group(m[1].strip()))
        elif m := DONE.match(line):
            now = seconds(m[5])
            running.pop(m[3].strip(), None)
            finished.append((*_group(m[3].strip()), float(m[4])))
            now_running = [(*_group(c), now - t) for c, t in running.items()]
            points.append((int(m[1]), int(m[2]), now, estimate_left(finished, now_running, pending, workers)))
    return _print(points) if points else 1


def _print(points) -> int:
    end, total = points[-1][2], points[-1][1]
    if points[-1][0] != total:
        # The real time left is only known once the last cell has finished: an interrupted run cannot be scored.
        print(
            f"the log stops at {points[-1][0]}/{total} cells: the run did not finish, so the real time left is unknown"
        )
        return 1
    print(f"{total} cells, {end:.0f} s from the first start to the last cell's end")
    for done, _, elapsed, left in points[:-1]:
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
    if sys.argv[1] == "--replay":
        raise SystemExit(replay(sys.argv[2]))
    raise SystemExit(main(sys.argv[1]))
