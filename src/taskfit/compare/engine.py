"""Run a grid: plan the cells, skip the finished ones, run the rest in worker processes, write the report.

Each cell runs in its own process (forked from a server that has torch imported already): one cell that
crashes, runs out of memory or is killed is reported as failed and the others go on, and a cell's peak
memory is its own. Killing the grid loses only the cells that were running; rerunning the same command
finishes the rest.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import time
from collections import deque
from pathlib import Path

import yaml

from taskfit.compare import store
from taskfit.compare.cell import CellSpec, cell_record
from taskfit.compare.cv import pool_calibrations
from taskfit.compare.ensemble import csv_records, ensemble_lines, ensemble_notes, ensemble_rows
from taskfit.compare.fewshot import cv_runs
from taskfit.compare.final import check_final
from taskfit.compare.plan import (
    Cell,
    data_fingerprint,
    plan_cells,
    resolve_prompt,
    resolve_selection,
    shots_label,
    validate_plan,
)
from taskfit.compare.prior import label_shares, reweight_records
from taskfit.compare.report import write_report
from taskfit.compare.selection import bootstrap_interval, yardstick
from taskfit.compare.summary import final_members, group_records, leaderboard, recommend, recommended_row
from taskfit.compare.worker import (
    CELL_FILE,
    ERROR_FILE,
    cell_process_main,
    read_finished,
    run_cell,
    truncation_line,
    write_failure,
)
from taskfit.config import ExperimentConfig
from taskfit.errors import TaskfitError
from taskfit.io import write_json_atomic, write_text_atomic
from taskfit.models.backbones import resolve_device
from taskfit.progress import GridProgress
from taskfit.tasks import get_task, load_pools
from taskfit.training.distributed import is_main_process, wait_for_everyone, world_size
from taskfit.training.loop import TrainingInterrupted

MEMORY_PER_WORKER_GB = 3  # a 135M causal LM fine-tuned in fp32 with AdamW peaks near this


def plan_workers(config: ExperimentConfig, pending: int) -> tuple[int, int]:
    """(cells at once, torch threads per cell). auto: one cell per core on CPU, bounded by memory; one on GPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if config.workers == "auto":
        if resolve_device(config.device).type == "cuda":
            workers = 1
        else:
            memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
            workers = max(1, min(cores, int(memory_gb // MEMORY_PER_WORKER_GB)))
    else:
        workers = int(config.workers)
    workers = max(1, min(workers, pending))
    threads = config.threads_per_worker or max(1, cores // workers)
    return workers, threads


def _failure_text(directory: Path, exitcode: int | None) -> str:
    path = directory / ERROR_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").split("\n", 1)[0]
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (out of memory? the kernel kills with SIGKILL)" if name == "SIGKILL" else ""
        text = f"the cell's process was killed by {name}{hint}; its log: {directory / 'log.txt'}"
    else:
        text = f"the cell's process exited with code {exitcode} without a result; its log: {directory / 'log.txt'}"
    write_text_atomic(path, text + "\n")
    return text


class _Grid:
    """Book-keeping of one run: the database, the console lines, what finished."""

    def __init__(self, out: Path, config: ExperimentConfig, stream, resume: bool = False) -> None:
        self.out, self.config, self.stream, self.resume = out, config, stream, resume
        self.db = store.connect(out)
        self.total = 0
        self.finished = 0
        self.progress: GridProgress | None = None  # set once the cells to run are known
        self.race = None  # compare.racing.Race in cross-validated grids with several seeds

    def race_check(self, queue: deque) -> None:
        """Once a K's first-seed cells have all ended: drop the pending cells of the rows the race stopped."""
        if self.race is None:
            return
        records = store.rows(self.db, cells=self.race.cells)
        for item, reason in self.race.stopped_cells(records, list(queue)):
            queue.remove(item)
            self._stopped(*item, reason, "")
        self.race.prioritise(records, queue)

    def _stopped(self, cell: Cell, spec: CellSpec, reason: str, how: str) -> None:
        """A cell the race stopped: recorded as such, out of the progress line's count."""
        from taskfit.compare.racing import STOPPED

        store.upsert(self.db, cell_record(cell, STOPPED, error=reason, spec=spec))
        if self.progress:
            self.progress.pending.pop(cell.path, None)
            self.progress.running.pop(cell.path, None)
            self.progress.total -= 1
        self.total -= 1
        self.say(f"  stop   {cell.label}{how}: {reason}")

    def stop_running(self, running: dict) -> None:
        """A later seed started while its row's first seed was still running (a worker was free), and the
        race has now stopped the row: end it; its result would never be used."""
        if self.race is None:
            return
        for sentinel, (cell, spec, process, _) in list(running.items()):
            reason = self.race.stops(cell)
            if reason is None:
                continue
            process.terminate()
            process.join(30)
            if process.is_alive():  # still in a slow step: its result is not needed
                process.kill()
                process.join()
            del running[sentinel]
            self._stopped(cell, spec, reason, " (running)")

    def say(self, text: str) -> None:
        print((self.progress.clear() if self.progress else "") + text, file=self.stream, flush=True)

    def started(self, cell: Cell, spec: CellSpec) -> None:
        directory = self.out / cell.path
        directory.mkdir(parents=True, exist_ok=True)
        for stale in ("metrics.json", ERROR_FILE) + (() if self.resume else ("log.txt",)):
            (directory / stale).unlink(missing_ok=True)
        write_json_atomic(directory / CELL_FILE, spec.as_json())
        store.upsert(self.db, cell_record(cell, "running", spec=spec))
        if self.progress:
            self.progress.start(cell.path)
        self.say(f"  start  {cell.label}")

    def ended(self, cell: Cell, spec: CellSpec, exitcode: int | None, seconds: float) -> None:
        directory = self.out / cell.path
        self.finished += 1
        metrics = read_finished(directory, cell.key)
        where = f"[{self.finished}/{self.total}]"
        tail = ""
        if self.progress:
            self.progress.end(cell.path)
            tail = f" | {self.progress.summary(count=False)}"
        if metrics is not None:
            store.upsert(self.db, cell_record(cell, "ok", metrics, spec=spec))
            self.say(
                f"{where} done   {cell.label}: {headline(metrics, self.config.task)} (fit {metrics['fit_seconds']:.1f} s, {seconds:.0f} s in all){tail}"
            )
        else:
            error = _failure_text(directory, exitcode)
            store.upsert(self.db, cell_record(cell, "failed", error=error, spec=spec))
            self.say(f"{where} FAILED {cell.label}: {error} (details: {directory / ERROR_FILE}){tail}")


def headline(metrics: dict, task: str = "classification") -> str:
    """A finished cell's main scores in one line."""
    return get_task(task).headline(metrics)


def _run_isolated(grid: _Grid, todo: list[tuple[Cell, CellSpec]], workers: int) -> None:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # torch, transformers' model classes, peft, accelerate, scikit-learn: imported once, not per cell
        context.set_forkserver_preload(["taskfit.compare.worker", "taskfit.compare.preload"])
    else:  # Windows: each cell imports torch itself
        context = multiprocessing.get_context("spawn")
    queue = deque(todo)
    running: dict[int, tuple[Cell, CellSpec, multiprocessing.process.BaseProcess, float]] = {}
    grid.race_check(queue)  # a rerun: the deciding cells may have finished before
    try:
        while queue or running:
            while queue and len(running) < workers:
                cell, spec = queue.popleft()
                grid.started(cell, spec)
                process = context.Process(
                    target=cell_process_main,
                    args=(spec, str(grid.out / cell.path), os.getpid(), dict(os.environ)),
                    name=f"taskfit-cell:{cell.path}",
                )
                process.start()
                running[process.sentinel] = (cell, spec, process, time.perf_counter())
            if grid.progress:
                grid.progress.tick()
            for sentinel in multiprocessing.connection.wait(list(running), timeout=1.0):
                if sentinel not in running:  # ended by the race a moment ago (stop_running)
                    continue
                cell, spec, process, started = running.pop(sentinel)  # type: ignore[call-overload]
                process.join()
                grid.ended(cell, spec, process.exitcode, time.perf_counter() - started)
                grid.race_check(queue)
                grid.stop_running(running)
    except BaseException:
        for cell, _spec, process, _ in running.values():
            process.terminate()  # a training cell writes a checkpoint at its next step, then stops
            process.join(30)
            store.upsert(grid.db, cell_record(cell, "interrupted", spec=_spec))
        raise


def _run_in_process(grid: _Grid, todo: list[tuple[Cell, CellSpec]]) -> None:
    """The same cells in this process, one after another (debugging, tests that patch code)."""
    from taskfit.strategies import BackboneCache

    backbones = BackboneCache(grid.config.trust_remote_code, grid.config.device)
    queue = deque(todo)
    grid.race_check(queue)
    while queue:
        cell, spec = queue.popleft()
        grid.started(cell, spec)
        started = time.perf_counter()
        try:
            run_cell(spec, grid.out / cell.path, backbones)
            code = 0
        except TrainingInterrupted as exc:  # Ctrl-C / SIGTERM: checkpointed; the grid stops too
            write_failure(grid.out / cell.path, exc)
            grid.ended(cell, spec, 1, time.perf_counter() - started)
            raise
        except Exception as exc:  # reported like a crashed process; the other cells go on
            write_failure(grid.out / cell.path, exc)
            code = 1
        grid.ended(cell, spec, code, time.perf_counter() - started)
        grid.race_check(queue)


def run_experiment(
    config: ExperimentConfig,
    output_dir: str | Path | None = None,
    stream=None,
    isolate: bool = True,
    resume: bool = False,
) -> dict:
    """Run (or finish) the grid of ``config`` in ``output_dir``; returns the summary also in results.json.

    ``resume``: an unfinished cell continues from its newest good checkpoint instead of starting over.
    Under ``accelerate launch`` every process runs the cells together, in process; only the main one writes."""
    stream = stream or sys.stdout
    out = Path(output_dir or config.output_dir or f"runs/{config.name}")
    pools = load_pools(config.data, config.task)
    config = resolve_prompt(resolve_selection(config, pools), pools.labels)
    validate_plan(config, pools)
    check_final(config)
    data_warnings = data_problems(config, pools)
    task_metric = get_task(config.task).metric(config.metric, pools.labels)
    prior = label_shares([*pools.train, *pools.dev]) if pools.labels else None  # the shares rows rank at
    ranking = yardstick(task_metric, config.metric, pools, data_warnings)
    cells = plan_cells(config, data_fingerprint(pools), ranking.key, prior)
    if not is_main_process():
        return _follow_main(config, out, cells, resume)
    show_data_problems(data_warnings, stream)
    if world_size() > 1 and isolate:
        print(f"{world_size()} processes (accelerate launch): cells run in process, together", file=stream)
        isolate = False
    out.mkdir(parents=True, exist_ok=True)
    config_yaml = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    write_text_atomic(out / "config.yaml", config_yaml)
    for note in pools.notes:
        print(f"data: {note}", file=stream)
    if any(s.augmentation() is not None and "synonym" in s.augmentation().ops for s in config.strategies):
        from taskfit.data.augment import WORDNET_MISSING, wordnet

        if wordnet() is None:  # once per grid here; each cell's log.txt says it again
            print(WORDNET_MISSING, file=stream)

    grid = _Grid(out, config, stream, resume)
    stale = store.mark_interrupted(grid.db)
    todo = []
    for cell in cells:
        metrics = read_finished(out / cell.path, cell.key)
        spec_path = out / cell.path / CELL_FILE
        if metrics is not None:
            spec = json.loads(spec_path.read_text(encoding="utf-8")) if spec_path.exists() else None
            store.upsert(grid.db, cell_record(cell, "ok", metrics, spec=spec))
        else:
            todo.append(cell)
    executor = None
    if config.executor == "ray":  # cells as Ray tasks; this process still writes every file
        from taskfit.compare.ray_executor import RayExecutor

        if not isolate:
            raise TaskfitError("executor: ray runs each cell as a Ray task: drop --in-process (or use local)")
        executor = RayExecutor(config)
        workers, threads = executor.connect(len(todo))
    else:
        workers, threads = plan_workers(config, max(len(todo), 1))
        if config.ray.parallel_trials > 1 and any(c.strategy.search for c in todo):
            print(  # the same seeded results as on the cluster up to TPE's startup trials (search.py)
                f"note: ray.parallel_trials: {config.ray.parallel_trials} applies to executor: ray only; "
                "here each search cell runs its trials one after another",
                file=stream,
            )
    if config.race and config.data.selection == "cv" and len(config.seeds) > 1 and pools.labels:
        # Ray runs every cell it is given (not raced yet); under accelerate launch every process must run
        # the same cells in the same order (_follow_main), so the main process may not drop or reorder any
        if executor is None and world_size() == 1:
            from taskfit.compare.racing import Race

            grid.race = Race(cells, config.seeds, list(pools.labels), ranking.key, ranking.label, prior)
            todo = grid.race.order(todo, _cost_prior(config, pools, todo))
    grid.total = len(todo)
    grid.progress = GridProgress(
        [(c.path, f"{c.strategy.run_id}/{c.strategy.backbone}", shots_label(c.shots)) for c in todo],
        workers if isolate else 1,
        stream,
        out,
        prior=_cost_prior(config, pools, todo),
    )
    print(
        f"{config.name}: {len(cells)} cells, {len(cells) - len(todo)} already finished"
        + (f" ({stale} interrupted earlier)" if stale else "")
        + (f", {len(todo)} to run, {workers} at a time with {threads} thread(s) each" if todo else "")
        + f" -> {out}",
        file=stream,
        flush=True,
    )
    specs = [(c, CellSpec.build(c, config, threads, workers if isolate else 1, resume)) for c in todo]
    wait_for_everyone()  # the other processes have read which cells are finished before any starts
    if executor is not None:
        executor.run(grid, specs)
    elif isolate:
        _run_isolated(grid, specs, workers)
        print(grid.progress.clear(), end="", file=stream)  # the live status line, if one is drawn
    else:
        _run_in_process(grid, specs)
    return summarise_grid(grid, cells, pools, config_yaml, data_warnings)


def _cost_prior(config: ExperimentConfig, pools, todo: list[Cell]) -> dict | None:
    """The cost model's estimate of each cell (text classification, the strategies the cost model prices;
    other tasks estimate from finished cells)."""
    if not get_task(config.task).describes_labels or not pools.labels:
        return None
    from taskfit.compare.cost import grid_prior

    return grid_prior(config, pools, todo)


def _follow_main(config: ExperimentConfig, out: Path, cells: list[Cell], resume: bool) -> dict:
    """A non-main process of a multi-process run: the same unfinished cells in the same order, writing nothing."""
    from taskfit.strategies import BackboneCache

    todo = [c for c in cells if read_finished(out / c.path, c.key) is None]
    wait_for_everyone()
    backbones = BackboneCache(config.trust_remote_code, config.device)
    for cell in todo:
        try:
            run_cell(
                CellSpec.build(cell, config, config.threads_per_worker or 1, 1, resume),
                out / cell.path,
                backbones,
            )
        except Exception as exc:  # the main process reports it
            print(f"{cell.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return {"strategies": []}


def data_problems(config: ExperimentConfig, pools) -> list[str]:
    """``taskfit inspect``'s checks on the examples this grid will see (warnings, never fatal); computed
    before the cells are planned, since the ranking metric they decide can enter a cell's key."""
    from taskfit.data.inspect import InspectReport, check_pools, scan_files

    report = InspectReport()
    scan_files(config.data, report)
    lengths = [n for s in config.strategies if (n := s.token_budget()) is not None]
    backbones = list(dict.fromkeys(s.backbone for s in config.strategies))
    check_pools(config.data, pools, backbones, min(lengths, default=256), report)
    return report.problem_lines()


def show_data_problems(warnings: list[str], stream) -> None:
    for w in warnings:
        print(f"data check: {w}", file=stream)
    if warnings:
        print("data check: details with `taskfit inspect` (the grid runs anyway)", file=stream)


def update_note(record: dict) -> str:
    """One line per incremental-update cell: old-data and new-data accuracy before and after the update."""
    u = record["metrics"]["incremental"]
    parts = [
        f"{what.replace('_', '-')} accuracy {u['before'][what]:.3f} → {u['after'][what]:.3f}"
        for what in ("old_data", "new_data")
        if what in u["before"]
    ]
    return f"update of {u['from']} ({u['method']['name']}), {record['cell']}: " + ", ".join(parts)


def summarise_grid(
    grid: _Grid, cells: list[Cell], pools, config_yaml: str, data_warnings: list[str] | None = None
) -> dict:
    out, config, stream = grid.out, grid.config, grid.stream
    records = store.rows(grid.db, cells=[c.path for c in cells])
    calibration_lines = pool_calibrations(out, records)  # before anything reads the rows' scores
    task = get_task(config.task)
    metric = yardstick(task.metric(config.metric, pools.labels), config.metric, pools, data_warnings or [])
    prior = None
    if pools.labels and config.data.selection == "cv":  # K-shot pools scored at the data's label shares
        prior = label_shares([*pools.train, *pools.dev])
        prior = prior if reweight_records(records, prior, list(pools.labels)) else None
    groups = group_records(records, metric)
    for g in groups:
        g.prior = prior
    ok = [r for r in records if r["status"] == "ok"]
    majority = next((r["metrics"].get("majority_baseline") for r in ok), None)
    for g in groups:  # the test score's interval over test examples and seeds (label tasks)
        if g.ok and pools.labels:
            g.interval = bootstrap_interval(out, g.ok, metric.key, list(pools.labels))
    notes = list(dict.fromkeys([*pools.notes, *(n for r in ok for n in r["metrics"].get("notes", []))]))
    notes += [f"data check: {w}" for w in data_warnings or []]
    notes += calibration_lines
    notes += [update_note(r) for r in ok if r["metrics"].get("incremental")]
    notes += [
        f"{r['cell']}: {truncation_line(r['metrics']['truncation'])}"
        for r in ok
        if r["metrics"].get("texts_truncated")
    ]
    notes.append(
        f"{metric.label}: mean ± sample std over seeds on the same k-shot samples; strategies that use no "
        "training data run once (K=0)"
    )
    if groups and groups[0].by == "dev" and not any(cv_runs(g) for g in groups):  # cv: said in the findings
        notes.append(
            f"rows are ranked by {metric.label} on each cell's dev sample (for trained strategies the dev set "
            "also chose their best epoch, so it is optimistic); test is reported beside it and never chooses"
        )
    notes += _class_weight_notes(config, pools)
    notes += correction_notes(groups)
    notes += task.report_notes()
    loads = sorted({(r["metrics"].get("workers", 1), r["metrics"].get("threads")) for r in ok}, key=str)
    notes.append(
        "timings measured with "
        + " or ".join(f"{w} cell(s) running at once, {t} thread(s) each" for w, t in loads)
        + "; fit s excludes loading the backbone (load_seconds in `taskfit runs show`); peak MB is the peak resident memory of the cell's own process"
    )
    recommendation = recommend(groups, config.budget, majority, len(pools.test), list(pools.labels))
    samples = task.report_samples(out, groups)
    recommendation += task.recommendation_notes(groups)
    ensembles = []
    if config.ensembles and pools.labels and not pools.test:
        notes.append(
            "ensembles: none built: there is no test split to score them on (their weights would be fitted on "
            "the same out-of-fold or dev predictions that rank the rows); give data.test to see them"
        )
    elif config.ensembles and pools.labels:  # from the saved probabilities: nothing refits, nothing is chosen
        ensembles = ensemble_rows(groups, out, list(pools.labels), config.ensembles, prior)
        recommendation += ensemble_lines(ensembles, recommended_row(groups, majority))
        notes += ensemble_notes(ensembles)
    logs = {}
    for r in ok:
        path = out / r["cell"] / "train_log.jsonl"
        if path.exists():
            logs[r["cell"]] = [
                json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line
            ]
    table = leaderboard(groups, majority, ensembles)
    summary = {
        "name": config.name,
        "output_dir": str(out),
        "notes": notes,
        "majority_baseline": majority,
        "recommendation": recommendation,
        "strategies": [g.as_dict() for g in groups],
        **({"ensembles": [g.as_dict() | {"seeds": g.ok} for g in ensembles]} if config.ensembles else {}),
        "cells": [{k: v for k, v in r.items() if k not in ("config", "metrics")} for r in records],
    }
    write_json_atomic(out / "results.json", summary)
    write_text_atomic(
        out / "results.md",
        f"# {config.name}\n\n{table}\n\n" + "\n".join([*recommendation, *(f"- {n}" for n in notes)]) + "\n",
    )
    write_text_atomic(out / "cells.csv", store.to_csv(records + csv_records(ensembles)))
    paths = write_report(
        out, config.name, groups, recommendation, notes, logs, majority, config_yaml, samples, ensembles
    )
    print("\n" + table + "\n\n" + "\n".join(recommendation), file=stream)
    print(
        f"\nreport: {paths['html']} (and {paths['markdown'].name}); cells: taskfit runs list {out}",
        file=stream,
        flush=True,
    )
    card = final_model(config, out, groups, majority, pools, stream)
    if card is not None:
        summary["final"] = {k: card[k] for k in ("row", "backbone", "why", "labelled_examples", "estimate")}
        write_json_atomic(out / "results.json", summary)
    return summary


def _class_weight_notes(config: ExperimentConfig, pools) -> list[str]:
    """What the trained rows did about imbalanced labels (issue 36), when the labelled data is imbalanced."""
    shares = label_shares([*pools.train, *pools.dev]) if pools.labels else {}
    if not shares or max(shares.values()) - min(shares.values()) < 0.1:
        return []
    weighted, plain = [], []
    for s in config.strategies:
        choice = s.model_dump().get("class_weight")
        if choice is not None:
            (weighted if choice == "balanced" else plain).append(s.run_id)
    lines = []
    shown = ", ".join(f"{lab} {v:.0%}" for lab, v in shares.items())
    if weighted:
        lines.append(
            f"imbalanced labels ({shown}): {', '.join(dict.fromkeys(weighted))} trained with class_weight: "
            "balanced (each label's examples weigh n / (labels x its count), contrastive's pairs anchor each "
            "label as often), so a rare label counts in training as much as a frequent one; their "
            "probabilities lean towards the rare labels accordingly"
        )
    if plain:
        lines.append(f"imbalanced labels ({shown}): {', '.join(dict.fromkeys(plain))} trained unweighted")
    return lines


def correction_notes(groups) -> list[str]:
    """Per row, the decision correction its cells chose on their held-out predictions (issue 36)."""
    from taskfit.compare.correction import cell_correction, describe

    lines = []
    for g in groups:
        records = [(r, c) for r in g.ok if (c := cell_correction(r.get("metrics") or {}))]
        if not records:
            continue
        shifted = sum("decision" in c["applied"] for _, c in records)
        first, record = records[0]
        lines.append(
            f"decision correction, {g.name}: {shifted} of {len(records)} cell(s) shifted the labels "
            f"(their selection scores are the cross-fitted corrected ones); seed {first.get('seed')}: "
            + describe(record)
        )
    return lines


def final_model(config: ExperimentConfig, out: Path, groups, majority, pools, stream) -> dict | None:
    """The chosen row refitted on every label into out/final (compare.final); a failure is reported, and
    the grid's results stand."""
    from taskfit.compare.final import fit_final

    if config.final == "none" or not get_task(config.task).fits_final or config.from_run or world_size() > 1:
        return None  # for now: classification grids, one process, not incremental updates
    try:
        members = final_members(groups, majority, config.final_members)
        return fit_final(config, out, groups, recommended_row(groups, majority), pools, stream, members[1:])
    except TaskfitError:
        raise
    except Exception as exc:  # the comparison itself succeeded: say what failed and keep its results
        print(f"final: fitting the final model failed: {type(exc).__name__}: {exc}", file=stream, flush=True)
        shutil.rmtree(out / "final", ignore_errors=True)  # never leave an older final model to be served
        (out / "final").mkdir()
        write_failure(out / "final", exc)
        return None


def load_results(output_dir: str | Path) -> dict:
    path = Path(output_dir) / "results.json"
    if not path.exists():
        raise TaskfitError(f"{output_dir}: no results.json (not a finished experiment folder)")
    return json.loads(path.read_text(encoding="utf-8"))
