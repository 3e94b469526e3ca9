"""The README's main job, timed: `taskfit run examples/quickstart.yaml`, then the prompting benchmark.

Usage:  .venv/bin/python bench/quickstart.py
"""

import subprocess
import sys
import time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
started = time.perf_counter()
subprocess.run(
    [
        sys.executable,
        "-m",
        "taskfit",
        "run",
        str(root / "examples/quickstart.yaml"),
        "--output",
        str(root / "bench/results/quickstart"),
    ],
    check=True,
)
print(f"quickstart wall time: {time.perf_counter() - started:.0f} s")
subprocess.run([sys.executable, str(root / "bench/prompting.py")], check=True)
