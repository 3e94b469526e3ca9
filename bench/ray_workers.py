"""Cells per minute on a Ray cluster as worker processes are added, against the local executor.

Usage:  .venv/bin/python bench/ray_workers.py [--config bench/configs/ray_slice_mr.yaml]

Starts a Ray head on loopback with one CPU (`ray start --head --num-cpus 1`), runs the grid slice through
`taskfit compare --executor ray --address 127.0.0.1:PORT` (one cell at a time, one torch thread), adds a
second node process (`ray start --address ... --num-cpus 1`: two cells at a time), runs the slice again into a
fresh folder, stops the cluster, then runs the slice on the local executor with 1 and 2 workers. Prints wall
time and cells per minute of each, and whether the leaderboards agree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
PORT = 6389


def compare(config: str, out: Path, *extra: str) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "taskfit",
            "compare",
            config,
            "--output",
            str(out),
            "--set",
            "threads_per_worker=1",
            *extra,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    board = json.loads((out / "results.json").read_text())["strategies"]
    cells = sum(len(list((out / r["strategy"]).rglob("predictions.jsonl"))) for r in board) or len(board)
    accuracy = {(r["strategy"], r["backbone"], r["shots"]): r["accuracy_mean"] for r in board}
    return seconds, {"cells": cells, "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "bench/configs/ray_slice_mr.yaml"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="taskfit-ray-bench-"))
    # loopback only: the nodes and the driver run without Ray's token authentication (on a real cluster keep
    # it and give the driver the token, docs/scale-out.md)
    os.environ.update({"RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""})
    env = dict(os.environ)
    results = {}
    temp = work / "ray"
    head = [
        RAY,
        "start",
        "--head",
        f"--port={PORT}",
        "--num-cpus=1",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
    ]
    subprocess.run(head, check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        address = f"127.0.0.1:{PORT}"
        results["ray, 1 worker node"] = compare(
            args.config, work / "ray1", "--executor", "ray", "--address", address
        )
        subprocess.run(
            [RAY, "start", f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(5)  # the new node registers with the head
        results["ray, 2 worker nodes"] = compare(
            args.config, work / "ray2", "--executor", "ray", "--address", address
        )
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, stdout=subprocess.DEVNULL)
    results["local, 1 worker"] = compare(args.config, work / "local1", "--workers", "1")
    results["local, 2 workers"] = compare(args.config, work / "local2", "--workers", "2")
    reference = results["local, 1 worker"][1]["accuracy"]
    for name, (seconds, info) in results.items():
        same = (
            "same leaderboard"
            if info["accuracy"] == reference
            else f"leaderboard differs: {info['accuracy']}"
        )
        print(
            f"{name}: {seconds:.0f} s, {info['cells']} cells, {info['cells'] * 60 / seconds:.2f} cells/min, {same}"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
