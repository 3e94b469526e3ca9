"""Cells in parallel or one at a time? Times one slice of the default grid both ways on this machine.

Usage:  .venv/bin/python bench/compare_workers.py [--shots 16] [--seeds 0,1]

Runs `taskfit compare` (the default grid, restricted to one K and the given seeds) with `workers=1` and all
of the machine's cores as torch threads, then with one worker per core and one thread each, into fresh
folders under bench/results/, and prints the wall times, their ratio and whether the leaderboards agree.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser()
parser.add_argument("--shots", default="16")
parser.add_argument("--seeds", default="0,1")
args = parser.parse_args()
cores = len(os.sched_getaffinity(0))
results = {}
for workers, threads in ((1, cores), (cores, 1)):
    out = root / "bench" / "results" / f"compare_w{workers}_t{threads}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "taskfit",
            "compare",
            "--output",
            str(out),
            "--set",
            f"data.shots=[{args.shots}]",
            "--set",
            f"seeds=[{args.seeds}]",
            "--set",
            f"workers={workers}",
            "--set",
            f"threads_per_worker={threads}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    board = json.loads((out / "results.json").read_text())["strategies"]
    results[(workers, threads)] = (
        seconds,
        {(r["strategy"], r["backbone"], r["shots"]): r["accuracy_mean"] for r in board},
    )
    print(f"workers={workers} threads={threads}: {seconds:.0f} s wall")
(one, b1), (many, b2) = results[(1, cores)], results[(cores, 1)]
print(f"one cell at a time / {cores} at once: {one / many:.2f}x")
diff = {k: (b1[k], b2[k]) for k in b1 if abs((b1[k] or 0) - (b2[k] or 0)) > 1e-9}
print("leaderboards agree" if not diff else f"accuracy differs with the thread count: {diff}")
