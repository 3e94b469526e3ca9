"""Cross-validated choices for one cell (``data.selection: cv``): the train and dev samples become one labelled
pool split into stratified, seeded k folds; each fold is fitted on the others and scored on itself; the
number of epochs is read off the mean fold curve, and the cell's model is then fitted on the whole pool with
that number (nothing held out, so no early stopping). The cell's selection score is the mean fold score of
fold fits with that number of epochs (each fold refitted without its held-out examples: the curves' fits had
kept their best epoch on them).

Cost: k + 1 fits per cell instead of one; 2k + 1 for strategies whose number of epochs is chosen.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from taskfit.data.folds import stratified_folds

OOF_MAX = 2000  # out-of-fold probabilities are kept in metrics.json for pools up to this size


def mean_curve(curves: list[dict[int, float]]) -> dict[int, float]:
    """Per epoch, the mean over the folds that reached it (every fold, as fold fits run every epoch)."""
    epochs = sorted(set().union(*curves)) if curves else []
    return {e: statistics.mean(c[e] for c in curves if e in c) for e in epochs}


def choose_epochs(curves: list[dict[int, float]]) -> int | None:
    """The epoch with the best mean fold score (the earliest on a tie), at least 1; None without curves."""
    curve = mean_curve(curves)
    if not curve:
        return None
    best = max(curve.values())
    return max(1, min(e for e, v in curve.items() if v >= best - 1e-12))


def choose_non_default(default: list[dict], other: list[dict], key: str) -> dict:
    """Take the non-default option only when its mean gain over the folds exceeds the fold-to-fold noise:
    one standard error of the paired per-fold differences (and is positive). {chosen, gain, noise}."""
    diffs = [o[key] - d[key] for d, o in zip(default, other) if key in d and key in o]
    if len(diffs) < 2:
        return {"chosen": False, "gain": None, "noise": None}
    gain = statistics.mean(diffs)
    noise = statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"chosen": gain > 0 and gain > noise, "gain": gain, "noise": noise}


def _curve(log: list[dict]) -> dict[int, float]:
    out = {}
    for record in log:
        if "event" in record or not isinstance(record.get("epoch"), int):
            continue
        key = next((k for k in record if k.startswith("dev_")), None)
        if key is not None:
            out[record["epoch"]] = float(record[key])
    return out


def cv_fit(config, ctx, train: list, dev: list, folds: int, task, build) -> tuple[object, dict]:
    """(the strategy fitted on train + dev with the epochs the folds chose, metrics: the mean fold scores
    as ``dev_*`` and a ``cv`` record). ``build(config, ctx)`` makes a fresh strategy."""
    pool = [*train, *dev]
    k = min(folds, min((sum(e.label == lab for e in pool) for lab in set(e.label for e in pool)), default=2))
    k = max(2, k)
    index = stratified_folds([e.label for e in pool], k, ctx.seed)
    trains_by_epoch = "epochs" in type(config).model_fields
    fold_config = config
    if (
        trains_by_epoch and "patience" in type(config).model_fields
    ):  # full curves: every fold runs every epoch
        fold_config = config.model_copy(update={"patience": config.epochs})
    fold_ctx = replace(ctx, run=replace(ctx.run, checkpoint_dir=None), progress=None)

    oof: dict[str, list] = {}

    def run_folds(cfg, select: bool = True) -> tuple[list[dict[int, float]], list[dict]]:
        """Each fold fitted on the others and scored on itself; ``select=False`` fits without the held-out
        fold (no per-epoch evaluation, no best-epoch restore on the examples it is then scored on)."""
        curves, scores = [], []
        held_out: list = [None] * len(pool)  # each pool example's prediction by the fold that held it out
        for held in index:
            held_set = set(held)
            fold_train = [e for i, e in enumerate(pool) if i not in held_set]
            fold_dev = [pool[i] for i in held]
            strategy = build(cfg, fold_ctx)
            strategy.fit(fold_train, fold_dev if select else [])
            curves.append(_curve(strategy.log))
            scores.append(task.selection_metrics(strategy, fold_dev, ctx.labels))
            if len(pool) <= OOF_MAX:
                preds = strategy.predict(fold_dev)
                for i, probs in zip(held, preds.probs.tolist()):
                    held_out[i] = dict(zip(preds.label_names, map(float, probs)))
        oof[getattr(cfg, "calibration", "") or ""] = held_out
        return curves, scores

    update: dict = {}
    calibration = None
    # in-context: none unless contextual clearly wins (per-query prefixes, selection: similar, take none)
    if getattr(config, "calibration", None) == "auto" and getattr(config, "selection", None) != "similar":
        _, plain = run_folds(fold_config.model_copy(update={"calibration": "none"}))
        curves, calibrated = run_folds(fold_config.model_copy(update={"calibration": "contextual"}))
        calibration = choose_non_default(plain, calibrated, "dev_accuracy")
        update["calibration"] = "contextual" if calibration["chosen"] else "none"
        scores = calibrated if calibration["chosen"] else plain
    else:
        curves, scores = run_folds(fold_config)
    epochs = choose_epochs(curves) if trains_by_epoch else None
    if epochs is not None:
        update["epochs"] = epochs
        # The curves' fold fits restored their best epoch on the very fold they were then scored and
        # predicted on: a choice made on the held-out examples (on mr, K=16: cv 0.753/0.744 for
        # head-finetune/lora against 0.700/0.662 on test). The scores and out-of-fold predictions come from
        # fold fits of the chosen number of epochs instead, with nothing held out to choose on.
        _, scores = run_folds(fold_config.model_copy(update=update), select=False)
    final_config = config.model_copy(update=update)
    strategy = build(final_config, ctx)
    strategy.fit(pool, [])
    metrics: dict = {}
    for key in ("dev_accuracy", "dev_macro_f1"):
        values = [s[key] for s in scores if key in s]
        if values:
            metrics[key] = statistics.mean(values)
    floors = [s["dev_majority"] for s in scores if "dev_majority" in s]
    if floors:
        metrics["dev_majority"] = {key: statistics.mean(f[key] for f in floors) for key in floors[0]}
    kept = oof.get(update.get("calibration", getattr(config, "calibration", "") or "")) or next(
        iter(oof.values()), None
    )
    if kept is not None and all(
        p is not None for p in kept
    ):  # for an ensemble's weights: no label used twice
        metrics["oof"] = [{"gold": e.label, "probs": p} for e, p in zip(pool, kept)]
    metrics["cv"] = {
        "folds": k,
        "pool": len(pool),
        "epochs": epochs,
        **({"calibration": {**calibration, "chosen": update["calibration"]}} if calibration else {}),
        "mean_curve": mean_curve(curves),
        "fold_scores": scores,
        "fold_std": {
            key: statistics.stdev([s[key] for s in scores])
            for key in ("dev_accuracy", "dev_macro_f1")
            if len(scores) > 1 and all(key in s for s in scores)
        },
    }
    return strategy, metrics
