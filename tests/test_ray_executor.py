"""``executor: ray``: a grid on a loopback Ray cluster matches the local executor; a killed cell worker is
retried; a killed driver resumes. Every cluster here is started by the test and stopped in its teardown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import yaml

from taskfit.cli import main
from taskfit.compare import run_experiment, store
from taskfit.config import validate_config
from taskfit.errors import TaskfitError
from taskfit.training.checkpoint import STOP_AT_ENV

from . import processes
from .test_compare import grid, leaderboard_values

try:
    import ray
except ImportError:  # the optional extra is missing: only the error test below runs
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is an optional extra: pip install 'taskfit[ray]'")

FAILSAFE_S = (
    processes.FAILSAFE_S
)  # only ends a stuck test: a loaded machine can take minutes (a cell took 6.6)


def small_grid(csv, bert, **extra) -> dict:
    """Two cells: zero-shot (K=0), then head-finetune at K=4 (each Ray cell imports torch afresh: seconds)."""
    raw = grid(csv, bert, **{"seeds": [0], **extra})
    raw["data"]["shots"] = [4]
    raw["ray"] = {"memory_gb_per_cell": 0.25, **raw.get("ray", {})}
    return raw


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(process: subprocess.Popen) -> None:
    """End a process started in its own session and everything it started (its process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(3)  # Ray's worker processes (their own groups) exit once their raylet is gone
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def loopback_cluster(monkeypatch):
    """A Ray head and one more worker node on 127.0.0.1, one CPU each; yields the head's address."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # loopback only; the driver here sends no token
    temp = tempfile.mkdtemp(prefix="tfray-", dir="/tmp")  # short: Ray's unix sockets live under it
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus", "1", "--num-gpus", "0", "--block", "--disable-usage-stats"]
    exe = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [exe, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--temp-dir", temp]
        + ["--include-dashboard", "false", *common],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nodes = [head]
    try:
        address = f"127.0.0.1:{port}"
        processes.wait_until(lambda: _port_open(port), "the Ray head", FAILSAFE_S, 0.2)
        nodes.append(
            subprocess.Popen(
                [exe, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):
            _stop_group(node)
        shutil.rmtree(temp, ignore_errors=True)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """ray.init (here and in the executor) replaces SIGTERM's handler and leaves it after shutdown; the
    tests after these check that training puts the default handlers back, so put them back here too."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def local_ray():
    """Ray started in this process: two CPUs, no dashboard; shut down after the test."""
    temp = tempfile.mkdtemp(prefix="tfray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _nodes_alive(n: int) -> bool:
    return len([x for x in ray.nodes() if x.get("Alive")]) >= n


@needs_ray
def test_ray_grid_on_a_head_and_a_worker_node_matches_the_local_executor(
    sentiment_csv, tiny_bert_dir, tmp_path, loopback_cluster, capsys
):
    broken = tmp_path / "broken-bert"
    shutil.copytree(tiny_bert_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")  # loads fine until the weights
    raw = small_grid(sentiment_csv, tiny_bert_dir)
    raw["strategies"].append({"name": "lora", "backbone": str(broken), "epochs": 1})  # fails, not retried
    local = run_experiment(validate_config(raw), tmp_path / "local", isolate=False)
    ray.init(address=loopback_cluster, log_to_driver=False)  # to wait for the second node only
    processes.wait_until(lambda: _nodes_alive(2), "the second Ray node", FAILSAFE_S, 0.2)
    ray.shutdown()
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "ray"
    code = main(
        ["compare", str(tmp_path / "grid.yaml"), "--output", str(out)]
        + ["--executor", "ray", "--address", loopback_cluster]
    )
    assert code == 1  # the broken cell failed; the others finished
    ran = json.loads((out / "results.json").read_text())
    assert leaderboard_values(ran) == leaderboard_values(local)
    cell = out / "head-finetune/tiny-bert0/k4/seed-0"
    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["executor"] == "ray" and metrics["tries"] == 1
    for name in ("cell.json", "log.txt", "predictions.jsonl", "model/config.json"):
        assert (cell / name).exists(), name  # the files came back through Ray and were written here
    assert not ray.is_initialized()  # the driver disconnected from the cluster it was given
    failed = out / "lora/broken-bert/k4/seed-0"
    assert "safetensors" in (failed / "error.txt").read_text() and not (failed / "metrics.json").exists()
    assert "retry" not in capsys.readouterr().out


def _stopped_ray_worker(root: int) -> int | None:
    """The pid of a Ray worker below ``root`` that stopped itself at a checkpoint (state T)."""
    for pid in processes.tree(root)[1:]:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if title.startswith(b"ray::") and processes.state(pid) == "T":
            return pid
    return None


@needs_ray
def test_a_killed_cell_worker_is_retried_and_nothing_is_redone_or_lost(
    sentiment_csv, tiny_bert_dir, tmp_path, local_ray, monkeypatch, capsys
):
    too_big = small_grid(sentiment_csv, tiny_bert_dir, executor="ray", ray={"gpus_per_cell": 1})
    with pytest.raises(
        TaskfitError, match="no node of the Ray cluster can run a cell: each asks 1 CPU, 1 GPU"
    ):
        run_experiment(validate_config(too_big), tmp_path / "too-big")  # this cluster has no GPU: no hang
    # both cells at once (1 thread each on 2 CPUs); the training cell stops itself at its first checkpoint
    raw = small_grid(sentiment_csv, tiny_bert_dir, executor="ray", threads_per_worker=1)
    raw["training"] = {"checkpoint_every_steps": 1}
    monkeypatch.setenv(STOP_AT_ENV, "1")
    out = tmp_path / "out"
    killed = {}

    def kill_the_stopped_cell_once_the_other_finished() -> None:
        try:
            pid = processes.wait_until(
                lambda: processes.find(out, "metrics.json") and _stopped_ray_worker(os.getpid()),
                "zero-shot to finish and head-finetune to stop",
                FAILSAFE_S,
                0.1,
            )
        except (
            AssertionError
        ) as exc:  # the failsafe: fail the test, never leave the grid waiting on a stopped cell
            killed["error"] = str(exc)
            pid = _stopped_ray_worker(os.getpid()) or processes.wait_until(
                lambda: _stopped_ray_worker(os.getpid()), "head-finetune to stop", FAILSAFE_S, 0.1
            )
        killed["finished"] = {p: p.stat().st_mtime_ns for p in processes.find(out, "metrics.json")}
        os.environ.pop(STOP_AT_ENV, None)  # the retry (submitted after the kill) runs through
        if pid is not None:
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_stopped_cell_once_the_other_finished, daemon=True)
    killer.start()
    summary = run_experiment(validate_config(raw), out)
    killer.join(FAILSAFE_S)
    assert "error" not in killed, killed["error"]
    assert "retry  head-finetune" in capsys.readouterr().out
    assert all(r["status"] == "ok" for r in summary["cells"]) and len(summary["cells"]) == 2
    tries = {
        str(p.parent.relative_to(out)): json.loads(p.read_text())["tries"] for p in out.rglob("metrics.json")
    }
    assert tries == {"zero-shot/tiny-bert0/k0": 1, "head-finetune/tiny-bert0/k4/seed-0": 2}
    assert len(killed["finished"]) == 1  # zero-shot's
    for path, stamp in killed["finished"].items():  # finished before the kill: not redone
        assert path.stat().st_mtime_ns == stamp
    db = store.open_existing(out)
    rows = store.rows(db)
    assert sorted(r["cell"] for r in rows) == sorted(tries) and all(r["status"] == "ok" for r in rows)
    assert len((out / "cells.csv").read_text().splitlines()) == 3


@needs_ray
def test_a_killed_ray_driver_resumes_without_redoing_finished_cells(sentiment_csv, tiny_bert_dir, tmp_path):
    # both cells at once; the training cell stops itself at its first checkpoint, so the kill lands mid-grid
    raw = small_grid(sentiment_csv, tiny_bert_dir, executor="ray", threads_per_worker=1)
    raw["training"] = {"checkpoint_every_steps": 1}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    # the driver starts its own one-machine cluster (in the driver's process group; its workers have theirs)
    driver = subprocess.Popen(
        [sys.executable, "-m", "taskfit", "compare", str(tmp_path / "grid.yaml"), "--output", str(out)],
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", STOP_AT_ENV: "1"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        processes.wait_until(
            lambda: (
                (processes.find(out, "metrics.json") and _stopped_ray_worker(driver.pid))
                or driver.poll() is not None
            ),
            "zero-shot to finish and head-finetune to stop",
            FAILSAFE_S,
            0.1,
        )
        everything = processes.tree(driver.pid)
        os.killpg(driver.pid, signal.SIGKILL)
        processes.signal_all(everything, signal.SIGKILL)  # the stopped cell too: it would wait forever
        driver.wait(FAILSAFE_S)
    finally:
        _stop_group(driver)
    finished = {p: p.stat().st_mtime_ns for p in processes.find(out, "metrics.json")}
    assert len(finished) == 1, "the kill should land mid-grid"
    lines = []

    class Lines:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    summary = run_experiment(validate_config(raw), out, stream=Lines())  # starts and stops its own Ray
    assert "2 cells, 1 already finished (1 interrupted earlier)" in "".join(lines)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    rows = store.rows(store.open_existing(out))
    assert len(rows) == 2 and len({r["cell"] for r in rows}) == 2
    assert all(r["status"] == "ok" for r in summary["cells"])


def test_without_ray_the_executor_names_the_extra(sentiment_csv, tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(TaskfitError, match=r"pip install 'taskfit\[ray\]'"):
        run_experiment(validate_config(small_grid(sentiment_csv, tiny_bert_dir, executor="ray")), tmp_path)


def test_address_needs_the_ray_executor(sentiment_csv, tiny_bert_dir, tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid(sentiment_csv, tiny_bert_dir)))
    assert main(["compare", str(tmp_path / "grid.yaml"), "--address", "auto"]) == 2
    assert "--executor ray" in capsys.readouterr().err


def test_received_files_land_in_the_cell_folder_with_metrics_last(tmp_path):
    from taskfit.compare.ray_executor import receive

    cell = tmp_path / "cell"
    (cell / "model").mkdir(parents=True)
    (cell / "model" / "stale.bin").write_bytes(b"an earlier try's")
    (cell / "log.txt").write_text("try 1\n")
    files = {
        "metrics.json": json.dumps({"key": "k", "accuracy": 1.0}).encode(),  # first here, written last
        "log.txt": b"try 2\n",
        "model/config.json": b"{}",
        "predictions.jsonl": b'{"label": "a"}\n',
    }
    receive(cell, files, {"executor": "ray", "tries": 2})
    assert sorted(str(p.relative_to(cell)) for p in cell.rglob("*") if p.is_file()) == [
        "log.txt",
        "metrics.json",
        "model/config.json",
        "predictions.jsonl",
    ]
    assert (cell / "log.txt").read_text() == "try 1\ntry 2\n"
    assert json.loads((cell / "metrics.json").read_text()) == {
        "key": "k",
        "accuracy": 1.0,
        "executor": "ray",
        "tries": 2,
    }
    last = (cell / "metrics.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= last for p in cell.rglob("*"))


@needs_ray
def test_the_executor_puts_back_the_signal_handlers_ray_init_replaces(tmp_path, sentiment_csv, tiny_bert_dir):
    from taskfit.compare.ray_executor import RayExecutor

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    executor = RayExecutor(validate_config({**small_grid(sentiment_csv, tiny_bert_dir), "executor": "ray"}))
    executor.connect(pending=1)  # starts a local cluster in this process: ray.init takes SIGTERM
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    executor.close()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
