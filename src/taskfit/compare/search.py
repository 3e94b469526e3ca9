"""Hyperparameter search inside one grid cell: Optuna proposes, the few-shot dev set decides.

The test split is never seen here. The best trial's fitted strategy is kept (no refit), so a search costs
``trials`` fits and nothing more. Under ``executor: ray`` with ``ray.parallel_trials`` > 1 the trials of a
batch run at once on the cluster (``compare.ray_search``; one refit more when the best ran elsewhere); the
ask/tell loop below is the same for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from taskfit.config import RangeSpace, StrategyBase
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.registry import REGISTRY
from taskfit.strategies import Context, Strategy, build_strategy
from taskfit.tasks import get_task

PRIMITIVE = (str, int, float, bool, type(None))
# Optuna's TPESampler draws its first n_startup_trials (10) at random from its seeded generator, whatever the
# results so far; asking several trials before telling any changes its proposals only after those.
TPE_STARTUP_TRIALS = 10


def suggest(trial, name: str, space):
    if isinstance(space, RangeSpace):
        if space.is_int:
            return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
        return trial.suggest_float(name, float(space.low), float(space.high), log=space.log)
    if all(isinstance(v, PRIMITIVE) for v in space):
        return trial.suggest_categorical(name, space)
    # Optuna's categorical values must be primitives; lists (e.g. target_modules) are chosen by index
    return space[trial.suggest_categorical(f"{name}#index", list(range(len(space))))]


def dev_score(strategy: Strategy, dev: list[Example], task: str) -> tuple[str, float]:
    """(name, value) of what a trial is judged on; higher is better (the task decides: ``Task.dev_score``)."""
    return get_task(task).dev_score(strategy, dev)


@dataclass
class TrialResult:
    metric: str  # e.g. dev_accuracy
    score: float
    seconds: float
    fitted: Strategy | None = None  # the fitted strategy, when the trial ran in this process
    node: str | None = None  # the Ray node that ran it, when it ran as a task of its own


RunBatch = Callable[[list[dict]], list[TrialResult]]  # the trials' params -> their results, in that order


def fit_trial(candidate: StrategyBase, ctx: Context, train: list, dev: list, task: str) -> TrialResult:
    """Build and fit one trial's strategy and score it on dev."""
    started = time.perf_counter()
    strategy = build_strategy(candidate, ctx)
    strategy.fit(train, dev)
    metric, score = dev_score(strategy, dev, task)
    return TrialResult(metric, score, time.perf_counter() - started, strategy)


def new_study(seed: int, storage: str | None = None, name: str | None = None):
    """A maximising TPE study seeded by the cell; with ``storage`` (an RDB URL) a fresh one under ``name``
    (a cell rerun starts over, as it does without storage: the old trials must not steer the sampler)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    if storage is None:
        return optuna.create_study(direction="maximize", sampler=sampler)
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:  # no earlier study of this cell
        pass
    return optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name=name)


def run_search(
    study, space: dict, trials: int, at_once: int, run_batch: RunBatch
) -> tuple[dict, TrialResult | None, list[dict]]:
    """Ask ``at_once`` trials, run them (``run_batch``), tell their scores in trial-number order; repeat.

    Returns (best params, best result, one record per trial). Ties keep the earlier trial, as does a batch's
    order, so ``at_once=1`` is the plain sequential search."""
    records: list[dict] = []
    best: TrialResult | None = None
    best_score, best_params = -float("inf"), {}
    number = 0
    while number < trials:
        asked = [study.ask() for _ in range(min(at_once, trials - number))]
        params = [{name: suggest(trial, name, s) for name, s in space.items()} for trial in asked]
        results = run_batch(params)
        for trial, values, result in zip(asked, params, results, strict=True):
            study.tell(trial, result.score)
            record = {
                "trial": number,
                "params": values,
                result.metric: result.score,
                "seconds": result.seconds,
            }
            records.append(record | ({"node": result.node} if result.node else {}))
            label = result.metric.replace("_", " ")
            print(f"search trial {number}: {values} -> {label} {result.score:.3f}", flush=True)
            if result.score > best_score:  # ties keep the earlier trial
                best, best_score, best_params = result, result.score, values
            number += 1
        del results  # the trials' fitted strategies, but the best's, are freed before the next batch
    return best_params, best, records


def search_and_fit(
    config: StrategyBase,
    ctx: Context,
    train: list[Example],
    dev: list[Example],
    parallel=None,
    cluster_runner: Callable[..., RunBatch] | None = None,
) -> tuple[Strategy, list[dict]]:
    """The cell's search. ``parallel`` (a ``compare.cell.ParallelSearch``, set by the Ray executor): trials
    asked at once, the study's storage; ``cluster_runner`` (``ray_search.cluster_batch_runner``, passed in
    so that this module needs nothing of Ray) runs such a batch."""
    if not dev:
        raise TaskfitError(
            f"strategy '{config.run_id}' has a search: block but there is no dev set to choose on"
        )
    study = new_study(ctx.seed, *((parallel.storage, parallel.study_name) if parallel else ()))
    base = config.model_dump(exclude={"search"})
    task = REGISTRY.entry_of(config).task

    def candidate(params: dict) -> StrategyBase:
        return type(config).model_validate({**base, **params})

    at_once, run_batch = 1, lambda params: [fit_trial(candidate(params[0]), ctx, train, dev, task)]
    if parallel is not None and parallel.trials > 1 and cluster_runner is not None:
        at_once, run_batch = parallel.trials, cluster_runner(candidate, ctx, train, dev, task, parallel)
    best_params, best, records = run_search(study, config.search or {}, config.trials, at_once, run_batch)
    assert best is not None
    metric, chosen = best.metric, {"event": "chosen", "params": best_params, best.metric: best.score}
    strategy = best.fitted
    if strategy is None:  # the best trial ran on another worker: fit its params again here (seeded: the same)
        refit = fit_trial(candidate(best_params), ctx, train, dev, task)
        strategy, chosen["refit_seconds"] = refit.fitted, refit.seconds
    records.append(chosen)
    assert strategy is not None
    strategy.log.append({"event": "search", "trials": config.trials, metric: best.score})
    return strategy, records


def parallel_trials_key(config, strategy: StrategyBase) -> dict:
    """What parallel trials add to a cell's key: nothing unless the batches change TPE's proposals (a search
    of more than its random startup trials, asked ``ray.parallel_trials`` at a time on the cluster)."""
    n = config.ray.parallel_trials
    if config.executor == "ray" and strategy.search and n > 1 and strategy.trials > TPE_STARTUP_TRIALS:
        return {"parallel_trials": n}
    return {}
