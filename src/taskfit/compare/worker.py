"""One grid cell, run in its own process: sample the splits, (search and) fit, evaluate on test, save.

Everything a cell produces goes into its folder; ``metrics.json`` is written last, so its presence (with the
cell's key in ``cell.json``) marks a finished cell. A failure writes ``error.txt`` instead.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskfit.compare.cell import CellSpec
from taskfit.compare.cv import ALTERNATIVE
from taskfit.errors import TaskfitError
from taskfit.io import write_json_atomic, write_jsonl_atomic, write_text_atomic
from taskfit.strategies import BackboneCache, Context, Strategy, build_strategy
from taskfit.tasks import get_task
from taskfit.training.distributed import RunOptions, is_main_process, world_size

CELL_FILE = "cell.json"
METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
DEV_PREDICTIONS_FILE = "dev_predictions.jsonl"
CHECKPOINTS = "checkpoints"


def cell_spec(cell, config, threads: int, workers: int = 1, resume: bool = False) -> CellSpec:
    """What a worker process needs to run one cell (also written to the cell folder as cell.json)."""
    return CellSpec.build(cell, config, threads, workers, resume)


def run_options(spec: CellSpec, directory: Path) -> RunOptions:
    """Checkpoints in the cell folder (resumed from with --resume), trackers writing there too."""
    t = spec.training
    return RunOptions(
        checkpoint_dir=directory / CHECKPOINTS,
        resume=spec.resume,
        fingerprint=spec.key,
        mixed_precision=t.mixed_precision,
        fused_optimizer=t.fused_optimizer,
        fast_dropout=t.fast_dropout,
        checkpoint_every_steps=t.checkpoint_every_steps,
        checkpoint_every_minutes=t.checkpoint_every_minutes,
        keep_checkpoints=t.keep_checkpoints,
        report_to=list(t.report_to),
        tracking_dir=directory / "tracking",
        run_name=spec.path,
    )


def _watch_parent(parent_pid: int) -> None:
    """Exit when the process that runs the grid is gone (killed): an orphaned cell only wastes cores."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def cell_process_main(spec: CellSpec, cell_dir: str, parent_pid: int, environ: dict[str, str]) -> None:
    """Entry point of a cell's process: output to log.txt, exit code 0 (ok) or 1 (failed, error.txt).

    ``environ`` is the grid process's environment now (the fork server kept the one it started with)."""
    os.environ.clear()
    os.environ.update(environ)
    directory = Path(cell_dir)
    _watch_parent(parent_pid)
    log = open(directory / "log.txt", "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives as long as the process)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    code = run_cell_quietly(spec, directory)
    sys.stdout.flush()
    if code:
        sys.exit(code)  # not os._exit: multiprocessing's exit handlers release what the libraries allocated


def run_cell_quietly(spec: CellSpec, directory: Path) -> int:
    """A cell in a process of its own (a fork-server child or a Ray worker): libraries quiet, the cell's
    threads; 0 when it finished, 1 when it failed (error.txt written; whoever runs the grid reports it and
    the other cells go on)."""
    from taskfit.libraries import quiet_libraries

    quiet_libraries()
    import torch

    torch.set_num_threads(max(1, spec.threads))
    try:
        run_cell(spec, directory)
    except Exception as exc:
        write_failure(directory, exc)
        return 1
    return 0


def write_failure(directory: Path, exc: BaseException) -> None:
    detail = str(exc) if isinstance(exc, TaskfitError) else traceback.format_exc()
    write_text_atomic(directory / ERROR_FILE, f"{type(exc).__name__}: {exc}\n\n{detail}")


def run_cell(spec: CellSpec | dict, directory: Path, backbones: BackboneCache | None = None) -> dict:
    """Run one cell in this process and write its folder; returns the metrics (also in metrics.json).

    With several processes (``accelerate launch``) every one runs the cell and only the main one writes.
    Everything it computes (training, dev choices, test) runs in the cell's precision."""
    from taskfit.models.backbones import resolve_device
    from taskfit.training.precision import autocast, resolve_precision

    spec = spec if isinstance(spec, CellSpec) else CellSpec.model_validate(spec)
    device = resolve_device(spec.device)
    precision = resolve_precision(spec.training.mixed_precision, device)
    if precision != spec.training.mixed_precision:  # a spec built by hand with auto: resolved here
        spec = spec.model_copy(
            update={"training": spec.training.model_copy(update={"mixed_precision": precision})}
        )
    with autocast(precision, device):
        return _run_cell(spec, directory, backbones)


@dataclass
class Prepared:
    """A cell's data and context, before anything is fitted (``_prepare``)."""

    task: Any
    main: bool  # this process writes the cell's files (one per accelerate launch)
    pools: Any
    splits: Any
    selection_dev: list  # what the grid ranks this cell by (never test)
    pool_positions: dict[str, list[int]]  # a K=0 cell of a cross-validated grid: each pool's examples
    ctx: Context
    augment_seconds: float = 0.0
    copies: int = 0  # augmented training examples


@dataclass
class Fitted:
    """A cell's fitted strategy and what fitting it cost and chose (``_fit``)."""

    strategy: Any
    fit_seconds: float
    load_seconds: float = 0.0
    trials: list = field(default_factory=list)  # search trials
    chosen: dict = field(default_factory=dict)  # the values a search chose
    cv_metrics: dict = field(default_factory=dict)  # a cross-validated cell's held-out scores
    incremental: dict | None = None  # a continual update's before-scores


def _run_cell(spec: CellSpec, directory: Path, backbones: BackboneCache | None) -> dict:
    """The cell's steps: prepare the data, fit (cross-validated, searched, updated or plain), choose the
    decision correction on held-out predictions, score test, save. Returns metrics.json's content."""
    prep = _prepare(spec, directory, backbones)
    fitted = _fit(spec, prep, directory)
    selection, dev_rows = _select(spec, prep, fitted)
    started = time.perf_counter()
    metrics, rows = prep.task.evaluate(fitted.strategy, prep.splits, spec.data)
    predict_seconds = time.perf_counter() - started
    truncation = getattr(fitted.strategy, "truncation", None)  # prompting strategies: what max_length cut
    if truncation:
        metrics.update({"texts_truncated": truncation["texts_truncated"], "truncation": truncation})
        if truncation["texts_truncated"]:
            print(truncation_line(truncation), flush=True)
    alternative = _alternative(fitted.strategy, prep.task, prep.splits, spec.data, fitted.cv_metrics)
    metrics.update(fitted.cv_metrics or selection)
    if not fitted.cv_metrics and prep.pool_positions and dev_rows and "probs" in dev_rows[0]:
        # label probabilities (classification) on every pool: out of fold by construction, it trained on none
        metrics["pool_predictions"] = {
            name: [{"gold": dev_rows[i]["gold"], "probs": dev_rows[i]["probs"]} for i in positions]
            for name, positions in prep.pool_positions.items()
        }
    if prep.main:
        fitted.strategy.save(directory / "model")
        write_jsonl_atomic(directory / "predictions.jsonl", rows)
        if dev_rows:  # the dev probabilities: a cross-strategy ensemble's weights are fitted on them
            write_jsonl_atomic(directory / DEV_PREDICTIONS_FILE, dev_rows)
        write_jsonl_atomic(directory / "train_log.jsonl", fitted.strategy.log)
    metrics.update(_costs(spec, prep, fitted, predict_seconds, directory))
    _gpu_peak(metrics)
    if fitted.incremental is not None:
        metrics["incremental"] = finish_update(fitted.incremental, fitted.strategy, prep.splits)
    if prep.main:
        _finish(directory, metrics, alternative)
    return metrics


def _prepare(spec: CellSpec, directory: Path, backbones: BackboneCache | None) -> Prepared:
    """The cell's K-shot splits (at K=0 the examples it is scored on instead) and its context; the training
    sample augmented when the strategy asks for it."""
    from taskfit.data.prepare import sample_splits
    from taskfit.progress import make_progress

    task = get_task(spec.task)
    main = is_main_process()
    run = run_options(spec, directory)
    if main:
        (directory / ERROR_FILE).unlink(missing_ok=True)
        if not run.resume:  # a fresh start: checkpoints of an earlier attempt would only mislead
            shutil.rmtree(directory / CHECKPOINTS, ignore_errors=True)
    data = spec.data  # validated once, in CellSpec
    seed = spec.seed if spec.seed is not None else 0
    pools = task.load_pools(data)
    splits = sample_splits(pools, data, seed)
    selection_dev = splits.dev
    pool_positions: dict[str, list[int]] = {}
    if spec.shots == 0:  # no training data: nothing to sample, nothing to tune on
        # nothing fits on it: a plain held-out estimate (with no dev, true few-shot: every label is held out)
        # in a cross-validated grid, the labelled pools its trained cells choose on (when not too many)
        pooled = pooled_examples(pools, data, spec.pools) if spec.pools else None
        if pooled:
            selection_dev, pool_positions = pooled
        else:
            selection_dev = dev_sample(splits.dev or (pools.train if pools.selection == "cv" else []), seed)
        splits.train, splits.dev = [], []
    ctx = Context(
        labels=splits.labels,
        prompt=spec.prompt,
        seed=seed,
        backbones=backbones or BackboneCache(spec.trust_remote_code, spec.device),
        run=run,
        no_relation_label=data.no_relation_label,
        choose_by=spec.choose_by or "accuracy",
        correct=spec.correct and task.corrects_decisions,  # label tasks that choose one (compare.correction)
        prior=spec.prior,
    )
    if main:
        ctx.progress = make_progress(sys.stderr)
    prep = Prepared(task, main, pools, splits, selection_dev, pool_positions, ctx)
    augment = spec.strategy.augmentation()
    if augment is not None and splits.train:  # the K-shot training sample only: dev and test stay as drawn
        started = time.perf_counter()
        splits.train, prep.copies = augment_training_data(splits.train, augment, ctx, directory, main)
        prep.augment_seconds = time.perf_counter() - started
    return prep


def _fit(spec: CellSpec, prep: Prepared, directory: Path) -> Fitted:
    """The strategy fitted as the cell's protocol says: a search on dev, cross-validation over train + dev
    (``compare.cv``), a continual update from a saved run, or one fit on train with dev to stop on."""
    strategy_config, splits, ctx = spec.strategy, prep.splits, prep.ctx
    # cross-validated selection: cells that learn from the sample, when the labels allow folds
    cross_validate = (
        "cv" in (spec.data.selection, prep.pools.selection)
        and bool(splits.train)
        and not spec.is_update
        and bool(splits.labels)
    )
    if strategy_config.search and spec.is_update:
        raise TaskfitError("from: (incremental update) cannot be combined with search yet; drop search:")
    started = time.perf_counter()
    if strategy_config.search:  # every trial loads its own backbone: loading counts as fitting here
        from dataclasses import replace

        from taskfit.compare.ray_search import cluster_batch_runner
        from taskfit.compare.search import search_and_fit

        ctx.run = replace(ctx.run, checkpoint_dir=None)  # trials are short and many: no checkpoints
        strategy, trials = search_and_fit(
            strategy_config, ctx, splits.train, splits.dev, spec.parallel_search, cluster_batch_runner
        )
        if prep.main:
            write_jsonl_atomic(directory / "search.jsonl", trials)
        values = strategy.config.model_dump()
        chosen = {k: values[k] for k in strategy_config.search}
        return Fitted(strategy, time.perf_counter() - started + prep.augment_seconds, 0.0, trials, chosen)
    if spec.is_update:
        from taskfit.continual.incremental import load_start

        strategy = load_start(spec.from_run, strategy_config, ctx)
        splits.labels = ctx.labels  # the saved head's label order
    else:
        strategy = None if cross_validate else build_strategy(strategy_config, ctx)
    load_seconds = time.perf_counter() - started  # the one-time GGUF conversion lands here, not in fit
    incremental = start_update(spec, strategy, splits, ctx.seed) if spec.is_update else None
    started = time.perf_counter()
    cv_metrics: dict = {}
    if cross_validate:  # k folds over train + dev choose; then one fit on all of them (compare/cv.py)
        from taskfit.compare.cv import cv_fit

        strategy, cv_metrics = cv_fit(
            strategy_config, ctx, splits.train, splits.dev, spec.data.folds, prep.task, build_strategy
        )
        prep.selection_dev = []  # the folds scored it: dev is in its training data now
    else:
        strategy.fit(splits.train, splits.dev)
    fit_seconds = time.perf_counter() - started + prep.augment_seconds  # paraphrasing is part of the cost
    return Fitted(strategy, fit_seconds, load_seconds, cv_metrics=cv_metrics, incremental=incremental)


def _select(spec: CellSpec, prep: Prepared, fitted: Fitted) -> tuple[dict, list[dict]]:
    """A cell not cross-validated: its selection scores and rows on dev (or the pools), after the decision
    correction chosen on them, which test is then read with (``fitted.strategy`` is replaced)."""
    if fitted.cv_metrics:
        return {}, []
    selection, dev_rows = prep.task.selection_with_rows(
        fitted.strategy, prep.selection_dev, prep.splits.labels
    )
    fitted.strategy, selection, dev_rows = _correct_on_dev(
        fitted.strategy, selection, dev_rows, prep.ctx, spec
    )
    return selection, dev_rows


def _costs(spec: CellSpec, prep: Prepared, fitted: Fitted, predict_seconds: float, directory: Path) -> dict:
    """What the cell cost and on what: metrics.json's timings, sizes, counts and load."""
    trainable, total = fitted.strategy.trainable_parameters()
    splits = prep.splits
    augmented = spec.strategy.augmentation() is not None
    return {
        "key": spec.key,
        "load_seconds": fitted.load_seconds,
        "fit_seconds": fitted.fit_seconds,
        "predict_seconds": predict_seconds,
        # None with no test split (true few-shot): nothing was timed, not an infinitely slow model
        "predict_examples_per_s": len(splits.test) / max(predict_seconds, 1e-9) if splits.test else None,
        "trainable_params": trainable,
        "total_params": total,
        "train_examples": len(splits.train),
        **({"augmented_examples": prep.copies, "augment_seconds": prep.augment_seconds} if augmented else {}),
        "dev_examples": len(splits.dev),
        "search_trials": len(fitted.trials),
        "chosen": fitted.chosen,
        "peak_rss_mb": peak_rss_mb(),
        "saved_mb": folder_mb(directory / "model") if prep.main else None,
        "threads": spec.threads,
        "workers": spec.workers,
        "mixed_precision": spec.training.mixed_precision,  # not "precision": NER reports a metric of that name
        "processes": world_size(),  # accelerate launch: processes that trained together
        "notes": splits.notes,
    }


def _finish(directory: Path, metrics: dict, alternative) -> None:
    """The cell's last files: the calibration it did not choose (or none), then metrics.json."""
    if alternative is not None:
        alt_metrics, alt_rows = alternative
        write_jsonl_atomic(directory / ALTERNATIVE / "predictions.jsonl", alt_rows)
        write_json_atomic(directory / ALTERNATIVE / METRICS_FILE, {**metrics, **alt_metrics})
    else:  # an earlier run's, for another calibration rule or config, would only mislead
        shutil.rmtree(directory / ALTERNATIVE, ignore_errors=True)
    write_json_atomic(directory / METRICS_FILE, metrics)  # last: its presence marks a finished cell
    shutil.rmtree(directory / CHECKPOINTS, ignore_errors=True)  # finished: the model folder is the result


def _alternative(strategy, task, splits, data, cv_metrics: dict) -> tuple[dict, list[dict]] | None:
    """A cross-validated in-context cell's test metrics and rows under the calibration it did not choose
    (its held-out scores are in ``cv_metrics``, popped from there): the grid decides the calibration over
    the seeds and may read the cell this way (``compare.cv.pool_calibrations``). Its label scores were
    kept while predicting test, so this is a correction of them, not another pass of the LM."""
    from taskfit.strategies.corrected import corrected_strategy

    alternative = cv_metrics.pop(ALTERNATIVE, None)
    if alternative is None:
        return None
    chosen = strategy.calibration
    strategy.calibration = alternative["cv"]["calibration"]["applied"]
    # read with the decision correction chosen on that calibration's held-out predictions, not this one's
    other = corrected_strategy(getattr(strategy, "inner", strategy), alternative["cv"].get("correction"))
    try:
        metrics, rows = task.evaluate(other, splits, data)
    finally:
        strategy.calibration = chosen
    return {**metrics, **alternative}, rows


def _correct_on_dev(strategy, selection: dict, dev_rows: list[dict], ctx, spec: CellSpec):
    """A cell chosen on dev (or, at K=0, on the pools): the decision correction chosen on its dev
    predictions (``compare.correction``, cross-fitted over stratified parts of them), the selection scores
    and dev rows then those of the corrected labels. Not for continual updates (their old head is kept)."""
    if spec.is_update or not dev_rows or "probs" not in dev_rows[0]:
        return strategy, selection, dev_rows
    from taskfit.compare.correction import correct_held_out

    gold = [r["gold"] for r in dev_rows]
    strategy, _, probs, record = correct_held_out(strategy, gold, [r["probs"] for r in dev_rows], ctx, None)
    if record is None:
        return strategy, selection, dev_rows
    if "decision" in record["applied"]:
        from taskfit.tasks.classification import selection_scores

        before = {k: v for k, v in selection.items() if k in ("dev_accuracy", "dev_macro_f1")}
        predicted = [max(p, key=p.get) for p in probs]
        selection = {**selection, **selection_scores(gold, predicted, ctx.labels)}
        dev_rows = [{**r, "predicted": p, "probs": q} for r, p, q in zip(dev_rows, predicted, probs)]
        record["before"] = before
    return strategy, {**selection, "correction": record}, dev_rows


def truncation_line(t: dict) -> str:
    demos = t.get("demonstrations_truncated", 0)
    return (
        f"max_length {t['max_length']}: {t['texts_truncated']} texts cut to fit (test: "
        f"{t['inputs_truncated']} of {t['inputs']} inputs"
        + (f", {demos} demonstration texts" if demos else "")
        + "); raise max_length to keep them whole"
    )


DEV_SAMPLE_MAX = 500


def dev_sample(dev: list, seed: int) -> list:
    """At most DEV_SAMPLE_MAX dev examples (seeded): a K=0 cell's selection score need not predict a whole
    large dev pool."""
    import random

    return dev if len(dev) <= DEV_SAMPLE_MAX else random.Random(seed).sample(dev, DEV_SAMPLE_MAX)


def pooled_examples(pools, data, grid) -> tuple[list, dict[str, list[int]]] | None:
    """The labelled pools (train + dev samples) of the grid's (K, seed) cells, each example once, and where
    each pool's examples sit in that list, in the pool's own order (cv_fit's: train, then dev); None when
    they hold more than OOF_MAX examples together (then a dev sample scores the cell, as outside cv)."""
    from taskfit.compare.cv import OOF_MAX
    from taskfit.compare.plan import pool_name
    from taskfit.data.prepare import sample_splits

    examples: list = []
    where: dict[int, int] = {}  # id of an example object -> its position (samples hold the pools' objects)
    positions: dict[str, list[int]] = {}
    for k, seed in grid:
        splits = sample_splits(pools, data.for_shots(k), seed)
        for e in (*splits.train, *splits.dev):
            if id(e) not in where:
                where[id(e)] = len(examples)
                examples.append(e)
        positions[pool_name(k, seed)] = [where[id(e)] for e in (*splits.train, *splits.dev)]
    return (examples, positions) if len(examples) <= OOF_MAX else None


def augment_training_data(
    train: list, augment, ctx: Context, directory: Path, main: bool
) -> tuple[list, int]:
    """The training sample plus its augmented copies, and how many copies; the copies go to augmented.jsonl, paraphrases are cached
    in the cell folder (a rerun does not regenerate them)."""
    from taskfit.data.augment import AUGMENTED_FILE, PARAPHRASE_CACHE, augment_examples, llm_paraphraser

    paraphraser = None
    if "paraphrase" in augment.ops:
        cache = directory / PARAPHRASE_CACHE if main else None
        paraphraser = llm_paraphraser(augment.paraphrase, ctx.seed, ctx.backbones, cache)
    examples, records = augment_examples(train, augment, ctx.seed, paraphraser)
    if main:
        write_jsonl_atomic(directory / AUGMENTED_FILE, records)
    print(f"augment: {len(records)} augmented copies of {len(train)} training examples", flush=True)
    return examples, len(records)


def _accuracies(strategy, old_test, new_test) -> dict:
    return {
        name: float(sum(p == e.label for p, e in zip(strategy.predict(test).labels, test)) / len(test))
        for name, test in (("old_data", old_test), ("new_data", new_test))
        if test
    }


def start_update(spec: CellSpec, strategy, splits, seed: int) -> dict:
    """from: RUN_DIR: the saved model's accuracy on old and new test data, then the continual method anchored
    on it (and on the old training data)."""
    from taskfit.config import CONTINUAL_METHODS
    from taskfit.continual.incremental import attach_method
    from taskfit.data.prepare import sample_splits
    from taskfit.tasks import load_pools

    old = None
    if spec.old_data is not None:
        old_cfg = spec.old_data
        old = sample_splits(load_pools(old_cfg), old_cfg, seed)
        if set(old.labels) != set(splits.labels):
            raise TaskfitError(
                f"old_data has labels {old.labels}; the saved run and the new data have {splits.labels}"
            )
    raw = spec.continual or {"name": "naive"}
    method = CONTINUAL_METHODS[raw["name"]].model_validate(raw)
    attach_method(strategy, method, old.train if old else [], seed)
    return {
        "from": spec.from_run,
        "method": method.model_dump(mode="json"),
        "old_test": old.test if old else [],
        "before": _accuracies(strategy, old.test if old else [], splits.test),
    }


def finish_update(update: dict, strategy, splits) -> dict:
    after = _accuracies(strategy, update["old_test"], splits.test)
    return {
        "from": update["from"],
        "method": update["method"],
        "before": update["before"],
        "after": after,
        "old_test_examples": len(update["old_test"]),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process (a cell's own process, so this is the cell's peak)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _gpu_peak(metrics: dict) -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        metrics["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def read_finished(directory: Path, key: str) -> dict | None:
    """A finished cell's metrics if the folder holds results for exactly this key, else None."""
    try:
        metrics = json.loads((directory / METRICS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return metrics if metrics.get("key") == key else None


__all__ = ["CellSpec", "Strategy", "cell_process_main", "cell_spec", "read_finished", "run_cell"]
