"""Hyperparameter search inside one grid cell: Optuna proposes, the few-shot dev set decides.

The test split is never seen here. The best trial's fitted strategy is kept (no refit), so a search costs
``trials`` fits and nothing more.
"""

from __future__ import annotations

import time

from taskfit.config import RangeSpace, StrategyBase
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.registry import REGISTRY
from taskfit.strategies import Context, Strategy, build_strategy
from taskfit.tasks import get_task

PRIMITIVE = (str, int, float, bool, type(None))


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


def search_and_fit(
    config: StrategyBase, ctx: Context, train: list[Example], dev: list[Example]
) -> tuple[Strategy, list[dict]]:
    import optuna

    if not dev:
        raise TaskfitError(
            f"strategy '{config.run_id}' has a search: block but there is no dev set to choose on"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=ctx.seed))
    base = config.model_dump(exclude={"search"})
    best: Strategy | None = None
    best_score, best_params = -float("inf"), {}
    task, metric = REGISTRY.entry_of(config).task, "dev_accuracy"
    records: list[dict] = []
    for number in range(config.trials):
        trial = study.ask()
        params = {name: suggest(trial, name, space) for name, space in config.search.items()}  # type: ignore[union-attr]
        candidate = type(config).model_validate({**base, **params})
        started = time.perf_counter()
        strategy = build_strategy(candidate, ctx)
        strategy.fit(train, dev)
        metric, score = dev_score(strategy, dev, task)
        study.tell(trial, score)
        records.append(
            {"trial": number, "params": params, metric: score, "seconds": time.perf_counter() - started}
        )
        print(f"search trial {number}: {params} -> {metric.replace('_', ' ')} {score:.3f}", flush=True)
        if score > best_score:  # ties keep the earlier trial
            best, best_score, best_params = strategy, score, params
    records.append({"event": "chosen", "params": best_params, metric: best_score})
    assert best is not None
    best.log.append({"event": "search", "trials": config.trials, metric: best_score})
    return best, records
