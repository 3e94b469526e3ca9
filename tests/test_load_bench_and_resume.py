"""Issue 19 #12: bench/serve_load.py times only the traffic after its warm-up and counts failed requests apart
from successful ones; `predict --resume` streams its .partial file instead of reading it whole."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from taskfit.serving.batch import _complete_lines
from tests.test_serving import serving

BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve_load.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("serve_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SlowStart:
    """The first forward pass takes ``warmup_s`` (a model's first call); questions (texts with '?') fail."""

    name, task, labels, generates = "slow-start", "classification", ["neg", "pos"], False

    def __init__(self, warmup_s: float) -> None:
        self.warmup_s, self.lock, self.calls = warmup_s, threading.Lock(), 0

    def predict(self, examples):
        with self.lock:
            self.calls += 1
            if self.calls == 1:
                time.sleep(self.warmup_s)
        if any("?" in e.text for e in examples):
            raise RuntimeError("this model answers no questions")
        return [{"label": "pos", "scores": {"neg": 0.0, "pos": 1.0}} for _ in examples]


def test_the_time_limit_starts_after_the_warm_up_and_errors_are_counted_apart(bench):
    with serving(SlowStart(warmup_s=2.5), max_batch_size=1, max_wait_ms=0) as url:
        port = int(url.rsplit(":", 1)[1])
        # a warm-up longer than the time limit: the measured traffic still runs
        result = bench.load(port, "predict", requests=16, concurrency=4, time_limit=2.0, max_tokens=4)
    assert result["requests"] > 0
    # texts 2, 3, 6 and 7 of 8 are questions: those requests fail and are reported as errors, not throughput;
    # the first round (texts 0-3) is sent before any time limit can pass, however slow the machine
    assert result["errors"] == result["errors_by_status"]["500"] >= 2 and result["succeeded"] >= 2
    assert result["succeeded"] + result["errors"] == result["requests"]
    assert result["requests_per_s"] == pytest.approx(result["succeeded"] / result["seconds"])


def test_resume_reads_the_partial_output_in_pieces(tmp_path):
    partial = tmp_path / "out.jsonl.partial"
    line = json.dumps({"source": "in.csv:2", "text": "x" * 200, "label": "pos"}) + "\n"
    with partial.open("w") as f:
        for _ in range(100_000):  # about 24 MB
            f.write(line)
        f.write('{"torn": ')
    size = partial.stat().st_size
    tracemalloc.start()
    try:
        done = _complete_lines(partial)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done == 100_000 and partial.stat().st_size == size - len('{"torn": ')
    assert peak < 4_000_000, f"peak {peak:,} bytes for a {size:,}-byte file"
