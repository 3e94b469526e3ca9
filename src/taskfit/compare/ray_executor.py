"""``executor: ray``: each grid cell runs as a Ray task on a cluster; this process stays the only writer.

The local executor (``engine._run_isolated``) stays the default. Here each cell is a task that reserves its
threads as CPUs, ``ray.gpus_per_cell`` GPUs and ``ray.memory_gb_per_cell`` of memory. The task runs the cell
in a scratch folder on its node and returns every file it wrote; the driver writes them into the output
folder (``metrics.json`` last, so a half-received cell is never taken for finished), so nodes need no shared
filesystem. A task whose worker process or node dies is resubmitted up to ``ray.max_retries`` times by the
driver, which keeps the error of each try; a cell that fails by itself (an exception) is not rerun.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from taskfit.compare import store
from taskfit.compare.cell import CellSpec
from taskfit.compare.worker import CELL_FILE, ERROR_FILE, METRICS_FILE
from taskfit.errors import TaskfitError
from taskfit.io import write_json_atomic, write_text_atomic

INSTALL_HINT = "pip install 'taskfit[ray]'"
ENV_PREFIXES = ("TASKFIT_",)  # the driver's taskfit settings reach the cells; the rest is the node's own


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise TaskfitError(f"executor: ray needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


def run_cell_task(spec_json: dict, environ: dict[str, str]) -> dict:
    """The Ray task: run one cell in a scratch folder on this node; return its exit code and files.

    Runs in a fresh worker process per cell (``max_calls=1``), like a local cell's own process."""
    os.environ.update(environ)
    spec = CellSpec.model_validate(spec_json)
    with tempfile.TemporaryDirectory(prefix="taskfit-cell-") as scratch:
        directory = Path(scratch)
        write_json_atomic(directory / CELL_FILE, spec_json)
        saved = os.dup(1), os.dup(2)
        log = open(directory / "log.txt", "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        code = 1
        try:
            from taskfit.compare.worker import run_cell_quietly

            code = run_cell_quietly(spec, directory)  # a failure: error.txt, reported by the driver
        finally:
            log.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            log.close()
        files = {
            str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != CELL_FILE
        }
    import ray

    return {"code": code, "files": files, "node": ray.util.get_node_ip_address(), "pid": os.getpid()}


def receive(directory: Path, files: dict[str, bytes], extra: dict) -> None:
    """Write a finished task's files into the cell folder: each atomically, ``metrics.json`` last."""
    if any(name.startswith("model/") for name in files):
        shutil.rmtree(directory / "model", ignore_errors=True)  # an earlier try's files must not linger
    for name, data in files.items():
        if name == METRICS_FILE:
            continue
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "log.txt":  # appended, like a local cell's log: earlier tries stay readable
            with open(path, "ab") as f:
                f.write(data)
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    if METRICS_FILE in files:
        import json

        metrics = json.loads(files[METRICS_FILE])
        write_json_atomic(directory / METRICS_FILE, {**metrics, **extra})


class RayExecutor:
    """Connects to (or starts) a Ray cluster, runs the cells there, hands each result to the grid."""

    def __init__(self, config) -> None:
        self.config = config
        self.settings = config.ray
        self.ray = import_ray()
        self.threads = config.threads_per_worker or 1
        self.owned = False  # a cluster this executor started (or connected to) is shut down by it
        self.saved_handlers: dict = {}  # signal handlers ray.init replaced, put back by close()

    def _need(self) -> dict[str, float]:
        need = {"CPU": float(self.threads), "GPU": float(self.settings.gpus_per_cell)}
        if self.settings.memory_gb_per_cell:
            need["memory"] = self.settings.memory_gb_per_cell * 2**30
        return {k: v for k, v in need.items() if v > 0}

    def connect(self, pending: int) -> tuple[int, int]:
        """(cells the cluster can run at once, threads per cell); checks that some node can run a cell."""
        if not pending:
            return 1, self.threads
        ray = self.ray
        if not ray.is_initialized():
            # ray.init replaces this process's SIGTERM handler and leaves it after shutdown: close() puts
            # back what was there (taskfit's own stop handling, or the default)
            self.saved_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
            kwargs = {"log_to_driver": False, "logging_level": "WARNING", "configure_logging": False}
            try:
                if self.settings.address:
                    ray.init(address=self.settings.address, **kwargs)
                else:
                    ray.init(include_dashboard=False, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.settings.address or "a local cluster"
                raise TaskfitError(
                    f"executor: ray could not reach {where}: {exc}. Start one with `ray start --head` and give "
                    "its address (ray.address or --address HOST:PORT), or leave the address out"
                ) from exc
            self.owned = True
        need = self._need()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
            biggest = max(nodes, key=lambda n: n.get("CPU", 0), default={})
            has = {k: round(biggest.get(k, 0) / (2**30 if k == "memory" else 1), 1) for k in need}
            self.close()
            raise TaskfitError(
                f"no node of the Ray cluster can run a cell: each asks {self._describe(need)}, the largest "
                f"node has {has}; lower threads_per_worker, ray.gpus_per_cell or ray.memory_gb_per_cell"
            )
        return max(1, min(pending, self._capacity(need))), self.threads

    def _with_search(self, cell, spec, need: dict[str, float]):
        """A search cell's spec with how its trials run here: ``ray.parallel_trials`` asked at once, as many
        running as the cluster holds, ``ray.search_storage``."""
        settings = self.settings
        if not spec.strategy.search or (settings.parallel_trials == 1 and settings.search_storage is None):
            return spec
        from taskfit.compare.cell import ParallelSearch

        parallel = ParallelSearch(
            trials=settings.parallel_trials,
            slots=max(1, min(settings.parallel_trials, spec.strategy.trials, self._capacity(need))),
            storage=settings.search_storage,
            study_name=f"taskfit/{cell.path}/{cell.key}",
            resources=need,
        )
        return spec.model_copy(update={"parallel_search": parallel})

    @staticmethod
    def _describe(need: dict[str, float]) -> str:
        return ", ".join(
            f"{v / 2**30:g} GiB memory" if k == "memory" else f"{v:g} {k}" for k, v in need.items()
        )

    def _capacity(self, need: dict[str, float]) -> int:
        """Cells the whole cluster can hold at once (re-read as nodes join or leave)."""
        total = self.ray.cluster_resources()
        return max(1, min(int(total.get(k, 0) // v) for k, v in need.items()))

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False
        for sig, handler in self.saved_handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
        self.saved_handlers = {}

    def run(self, grid, todo: list[tuple]) -> None:
        """Run ``todo`` ([(cell, spec)]) on the cluster, keeping as many in flight as it can hold."""
        if not todo:
            return
        from taskfit.compare.cell import cell_record

        ray = self.ray
        task = ray.remote(
            num_cpus=self.threads,
            num_gpus=self.settings.gpus_per_cell,
            memory=int(self.settings.memory_gb_per_cell * 2**30)
            if self.settings.memory_gb_per_cell
            else None,
            max_retries=0,  # the driver retries, so that it knows each try and keeps its error
            max_calls=1,  # a fresh process per cell: its own peak memory, no state left by the previous one
            name="taskfit-cell",
        )(run_cell_task)
        need = self._need()
        queue = [(cell, self._with_search(cell, spec, need)) for cell, spec in todo]
        running: dict = {}  # ObjectRef -> (cell, spec, try number, started)

        def room(spec) -> bool:
            """A search cell with parallel trials counts as the cells its trials may take (ray_search.py)."""
            used = sum(_slots(s) for _c, s, _a, _t in running.values())
            return not running or used + _slots(spec) <= self._capacity(need)

        def submit(cell, spec, attempt: int) -> None:
            environ = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
            ref = task.remote(spec.as_json(), environ)
            running[ref] = (cell, spec, attempt, time.perf_counter())

        try:
            while queue or running:
                while queue and room(queue[0][1]):
                    cell, spec = queue.pop(0)
                    grid.started(cell, spec)
                    submit(cell, spec, 1)
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in done:
                    cell, spec, attempt, started = running.pop(ref)
                    directory = grid.out / cell.path
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # our task code itself raised: no rerun
                        write_text_atomic(directory / ERROR_FILE, f"{_first_line(exc)}\n\n{exc}\n")
                        grid.ended(cell, spec, 1, time.perf_counter() - started)
                        continue
                    except ray.exceptions.RayError as exc:  # the worker process or its node died
                        error = f"try {attempt}: {type(exc).__name__}: {_first_line(exc)}"
                        if attempt <= self.settings.max_retries:
                            grid.say(f"  retry  {cell.label}: {error}")
                            store.upsert(grid.db, cell_record(cell, "running", error=error, spec=spec))
                            submit(cell, spec, attempt + 1)
                        else:
                            write_text_atomic(
                                directory / ERROR_FILE,
                                f"the cell's Ray worker or node died on each of {attempt} tries "
                                f"(ray.max_retries: {self.settings.max_retries}); last: {error}\n",
                            )
                            grid.ended(cell, spec, None, time.perf_counter() - started)
                        continue
                    receive(
                        directory,
                        result["files"],
                        {"executor": "ray", "tries": attempt, "node": result["node"]},
                    )
                    grid.ended(cell, spec, result["code"], time.perf_counter() - started)
        except BaseException:
            for ref, (cell, spec, _attempt, _started) in running.items():
                ray.cancel(ref, force=True)
                store.upsert(grid.db, cell_record(cell, "interrupted", spec=spec))
            raise
        finally:
            self.close()


def _slots(spec) -> int:
    return spec.parallel_search.slots if spec.parallel_search is not None else 1


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
