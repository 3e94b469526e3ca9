"""Load benchmark for ``taskfit serve``: dynamic batching vs batch size 1, same run, same traffic.

    python bench/serve_load.py RUN_DIR [--endpoint predict|completions] [--requests 256] [--concurrency 16]
        [--max-batch-size 16] [--max-wait-ms 10] [--time-limit 300] [--threads 2]

The server runs as a second process (``taskfit serve``, bound to 127.0.0.1); this process sends a bounded
number of concurrent requests (one input each) to loopback only and stops at ``--time-limit`` seconds.
Reports throughput (successful requests/s), p50/p99 latency of the successes, errors by status apart, and
the ratio batched / batch size 1. The time limit starts after a warm-up round that is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

TEXTS = [
    "a gorgeous, witty, seductive movie.",
    "the plot is paper-thin and the characters are flat.",
    "who wrote the declaration of independence?",
    "how many miles is it from the earth to the moon?",
    "an engrossing portrait of a family in crisis.",
    "it's a bad sign when you're rooting for the villain to win.",
    "where is the eiffel tower?",
    "what does nasa stand for?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: str, port: int, batch: int, wait_ms: float, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("TASKFIT_API_KEY", None)
    cmd = [sys.executable, "-m", "taskfit", "serve", run_dir, "--port", str(port)]
    cmd += ["--max-batch-size", str(batch), "--max-wait-ms", str(wait_ms), "--timeout", "120"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start within 180 s")


def load(
    port: int, endpoint: str, requests: int, concurrency: int, time_limit: float, max_tokens: int
) -> dict:
    url = f"http://127.0.0.1:{port}" + ("/v1/predict" if endpoint == "predict" else "/v1/completions")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.Client(timeout=120, limits=limits)  # kept-alive connections, as a real client pools them
    stop_at = None  # set after the warm-up: a slow first batch must not eat the measured traffic's time

    def one(i: int) -> tuple[float, int] | None:
        if stop_at is not None and time.monotonic() > stop_at:
            return None  # the time bound: requests not yet sent are skipped
        text = TEXTS[i % len(TEXTS)]
        body = (
            {"inputs": [text]}
            if endpoint == "predict"
            else {"prompt": text, "max_tokens": max_tokens, "temperature": 0}
        )
        started = time.perf_counter()
        try:
            status = client.post(url, json=body).status_code
        except httpx.HTTPError:
            status = 0  # no answer at all (connection refused, reset, timed out)
        return time.perf_counter() - started, status

    with ThreadPoolExecutor(concurrency) as pool:  # warm-up: one round, not counted, not timed
        list(pool.map(one, range(concurrency)))
    stop_at = time.monotonic() + time_limit
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for r in pool.map(one, range(requests)) if r is not None]
    wall = time.perf_counter() - started
    client.close()
    # throughput and latency count successful requests only; failures are reported beside them
    latencies = sorted(t for t, s in results if s == 200)
    failed = Counter(str(s) for _, s in results if s != 200)
    if len(latencies) > 1:
        q = statistics.quantiles(latencies, n=100)
    else:
        q = (latencies or [float("nan")]) * 99
    return {
        "requests": len(results),
        "succeeded": len(latencies),
        "errors": sum(failed.values()),
        "errors_by_status": dict(failed),  # "0": no HTTP answer
        "seconds": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * q[49],
        "p99_ms": 1000 * q[98],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--endpoint", choices=["predict", "completions"], default="predict")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-tokens", type=int, default=16, help="completions: new tokens per request")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds of traffic per setting")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    args = parser.parse_args()
    out = {"run": args.run_dir, "endpoint": args.endpoint, "concurrency": args.concurrency}
    for name, batch in (("batched", args.max_batch_size), ("batch_size_1", 1)):
        port = free_port()
        server = start_server(args.run_dir, port, batch, args.max_wait_ms, args.threads)
        try:
            out[name] = load(
                port, args.endpoint, args.requests, args.concurrency, args.time_limit, args.max_tokens
            )
            out[name]["max_batch_size"] = batch
        finally:
            server.terminate()
            server.wait(30)
    single = out["batch_size_1"]["requests_per_s"]
    out["throughput_ratio_batched_over_1"] = out["batched"]["requests_per_s"] / single if single else None
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
