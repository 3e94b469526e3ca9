"""A/B of ``frozen_linear_casts`` (issue 22): taskfit lora on minilm, per-call autocast casts of the frozen
weights vs the copies made once per fit, alternating which runs first by seed, in one process.

Usage:  .venv/bin/python bench/frozen_casts_ab.py [--seeds 5]
Prints each fit's seconds (backbone build included) and the sums; the trained weights are identical.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from reference_lora import run_taskfit

import taskfit.training.loop as loop
from taskfit.config import DataConfig
from taskfit.data.prepare import sample_splits
from taskfit.tasks import load_pools


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    real = loop.frozen_linear_casts
    modes = {"per-call": lambda model, device_type: contextlib.nullcontext, "once": real}
    data = DataConfig(dataset="mr", shots=16, test_limit=50)
    pools = load_pools(data)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for seed in range(args.seeds):
        splits = sample_splits(pools, data, seed)
        if seed == 0:
            run_taskfit(splits, 0)  # warm-up: first-use costs land in neither column
        for mode in list(modes) if seed % 2 == 0 else list(modes)[::-1]:
            loop.frozen_linear_casts = modes[mode]
            started = time.perf_counter()
            run_taskfit(splits, seed)
            times[mode].append(time.perf_counter() - started)
            print(f"seed {seed} {mode}: {times[mode][-1]:.2f} s", flush=True)
    loop.frozen_linear_casts = real
    for mode, values in times.items():
        print(f"{mode}: median {statistics.median(values):.2f} s, sum {sum(values):.2f} s")


if __name__ == "__main__":
    main()
