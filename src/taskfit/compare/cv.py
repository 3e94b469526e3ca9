"""Cross-validated choices for one cell (``data.selection: cv``): the train and dev samples become one labelled
pool split into stratified, seeded k folds; each fold is fitted on the others and scored on itself; the
number of epochs is read off the mean fold curve, and the cell's model is then fitted on the whole pool with
that number (nothing held out, so no early stopping). The cell's selection score is the mean fold score of
fold fits with that number of epochs (each fold refitted without its held-out examples: the curves' fits had
kept their best epoch on them).

Cost: k + 1 fits per cell instead of one; 2k + 1 for strategies whose number of epochs is chosen.

In-context with one shared demonstration prefix trains nothing: the only labels its model uses are its
demonstrations. It is fitted once on the pool, and every other pool example is held out from that very
model: its calibration is chosen and its score measured on them (fold models would each hold different
demonstrations, so their scores and their calibration choice say little about the prefix that is deployed).
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from taskfit.compare.selection import choose_on_resamples
from taskfit.data.folds import fold_count, stratified_folds

OOF_MAX = 2000  # out-of-fold probabilities are kept in metrics.json for pools up to this size
# epochs without a better mean fold score before the folds stop: the mean of k curves is smoother than one
# dev curve (patience 8); on mr 40 labels the mean curves peaked at epoch 7 (head-finetune) and 12 (lora)
FOLD_PATIENCE = 5
ALTERNATIVE = "alternative"  # cv_fit's metrics key (and the cell's subfolder): the calibration not chosen


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


def across_seeds(verdicts: list[dict]) -> dict | None:
    """A row's choice made once over its seeds' cross-validated gains (each verdict's ``gain`` of the
    non-default option): taken when their mean is positive and exceeds one standard error over the seeds
    (``choose_non_default`` with the seeds as the paired units). None with one seed, where its own verdict
    stands; with more seeds but fewer than two measured gains (pools too small to split), not taken.

    Why not seed by seed: each seed's check sees a few dozen examples and takes an option by chance about
    one time in six when it gains nothing; on issue 18's runs the ensemble mixes kept that way on trec won
    0.028 on one seed and lost 0.028 on another, and in-context's calibration on trec went its own way on
    one seed of five and lost 0.07 macro-F1 there (BENCHMARKS.md). Five seeds are five independent pools,
    so their gains pooled are a sharper test of the same question, and the row is one configuration."""
    gains = [v["gain"] for v in verdicts if v.get("gain") is not None]
    if len(verdicts) < 2:
        return None
    if len(gains) < 2:
        return {"chosen": False, "gain": gains[0] if gains else None, "noise": None, "seeds": len(gains)}
    rule = choose_non_default([{"gain": 0.0}] * len(gains), [{"gain": g} for g in gains], "gain")
    return {**rule, "seeds": len(gains)}


def _curve(log: list[dict]) -> dict[int, float]:
    out = {}
    for record in log:
        if "event" in record or not isinstance(record.get("epoch"), int):
            continue
        key = next((k for k in record if k.startswith("dev_")), None)
        if key is not None:
            out[record["epoch"]] = float(record[key])
    return out


def _fold_count(pool: list, folds: int) -> int:
    return fold_count([e.label for e in pool], folds)


def uses_one_prefix(config) -> bool:
    """A prompting strategy whose fitted model is its demonstration prefix and nothing else, as its config
    declares (``StrategyBase.holds_one_prefix``)."""
    return config.holds_one_prefix()


def calibration_default(demonstrations: int, labels: int) -> str:
    """The calibration ``auto`` keeps unless the other one wins by more than the noise: contextual for a
    prefix of one demonstration per class, none for more. Measured on smollm2 over 5 seeds (BENCHMARKS.md,
    issue 11): contextual lifted one-per-class prompts (mr +0.054, tweets-sentiment +0.017, trec -0.005) and
    cost 0.11 on mr with four per class. With none as the default for every prefix, mr at K=16 kept none on
    two seeds whose held-out gain from contextual (+0.08, +0.03) did not clear the noise of 62 examples, and
    lost 0.15-0.17 on test there (BENCHMARKS.md, issue 18)."""
    return "contextual" if demonstrations <= labels else "none"


def _held_out_of_demonstrations(config, ctx, pool: list, folds: int, build) -> tuple[object, dict]:
    """in-context: fitted once on the pool; calibration chosen and the score measured on the pool examples
    that are not its demonstrations (none of which the model has seen). ``calibration: auto`` takes the
    non-default calibration only when its per-example gain in accuracy exceeds one standard error of the
    paired differences (the rule of ``choose_non_default``). The spread is over ``k`` stratified parts of
    those examples: the same model scored on fold-sized parts, so it measures scoring noise only. The default
    the rule keeps is ``calibration_default``'s. The choice is made on the grid's ranking metric
    (``ctx.choose_by``) and, when the data's label shares differ from the pool's (``ctx.prior``), at the
    data's shares, by a paired bootstrap (``choose_on_resamples``)."""
    from taskfit.compare.prior import weights_for
    from taskfit.strategies.corrected import corrected_strategy

    auto = config.calibration == "auto"
    # fitted as calibration none (auto's fit would log "no dev set to choose on"), then chosen below
    strategy = build(config.model_copy(update={"calibration": "none"}) if auto else config, ctx)
    strategy.fit(pool, [])
    strategy.config = config
    shown = {id(e) for e in strategy.demonstrations}  # every demonstration set's (demo_sets)
    held = [i for i, e in enumerate(pool) if id(e) not in shown]
    examples = [pool[i] for i in held]
    if len(examples) < 2:
        raise ValueError(
            f"in-context with {len(shown)} demonstrations leaves {len(examples)} of the {len(pool)} "
            "labelled examples to choose on; label more examples or lower demos_per_class (or demo_sets)"
        )

    def predict(method: str):
        strategy.calibration = method
        return strategy.predict(examples)

    calibration, alternative = None, None
    if auto:
        strategy.scored = {}  # both calibrations (here and on test) from one pass of the LM
        default = calibration_default(len(strategy.pool), len(ctx.labels))
        other = other_calibration(default)
        by_method = {default: predict(default), other: predict(other)}

        def correct(preds) -> list[dict]:
            return [{"dev_accuracy": float(p == e.label)} for p, e in zip(preds.labels, examples)]

        gold = [e.label for e in examples]
        # at the data's label shares when the pool's differ (the grid ranks the rows at them: compare.prior)
        weight = weights_for(gold, ctx.prior)
        if ctx.choose_by == "macro_f1" or weight is not None:  # macro-F1: the grid ranks by it, choose on it
            calibration = choose_on_resamples(
                gold,
                by_method[default].labels,
                by_method[other].labels,
                list(ctx.labels),
                ctx.choose_by,
                weight=weight,
            )
        else:
            calibration = choose_non_default(
                correct(by_method[default]), correct(by_method[other]), "dev_accuracy"
            )
        chosen = other if calibration["chosen"] else default
        calibration.update(chosen=chosen, default=default, by=ctx.choose_by, weighted=weight is not None)
        strategy.calibration = chosen
        preds = by_method[chosen]
        strategy.log.append(
            {
                "event": "calibration",
                **calibration,
                "on": f"{len(examples)} pool examples, not demonstrations",
            }
        )
        # the calibration not chosen, scored the same way: the grid may decide it over the seeds instead
        # (pool_calibrations), and then reads this seed's cell with it
        unchosen = other_calibration(chosen)
        alternative = _held_out_metrics(pool, held, examples, by_method[unchosen], ctx, folds)
        alternative["cv"]["calibration"] = {**calibration, "applied": unchosen}
        calibration["applied"] = chosen
    else:
        preds = strategy.predict(examples)
    metrics = _held_out_metrics(pool, held, examples, preds, ctx, folds)
    strategy = corrected_strategy(strategy, metrics["cv"].get("correction"))
    if calibration:
        metrics["cv"]["calibration"] = calibration
    if alternative:
        metrics[ALTERNATIVE] = alternative
    return strategy, metrics


def _held_out_metrics(pool: list, held: list[int], examples: list, preds, ctx, folds: int) -> dict:
    """The held-out examples' scores (``dev_*``), their spread over fold-sized parts and the pool's
    out-of-fold probabilities, from the predictions of a one-prefix in-context cell."""
    from taskfit.compare.correction import correct_held_out
    from taskfit.tasks.classification import selection_scores

    k = _fold_count(examples, folds)
    gold = [e.label for e in examples]
    parts = stratified_folds(gold, k, ctx.seed)
    rows = [dict(zip(preds.label_names, map(float, p))) for p in preds.probs.tolist()]
    # the decision correction, chosen on these held-out predictions (compare.correction); its record says
    # which offsets the cell's model applies (worker._alternative reads the other calibration's)
    _, corrected, rows, correction = correct_held_out(None, gold, rows, ctx, parts)
    predicted = [max(r, key=r.get) for r in rows]
    scores = [
        selection_scores([gold[i] for i in part], [predicted[i] for i in part], ctx.labels) for part in parts
    ]
    metrics = {
        key: value
        for key, value in selection_scores(gold, predicted, ctx.labels).items()
        if key != "dev_examples_scored"
    }
    if corrected is not None:
        correction["before"] = {
            key: value
            for key, value in selection_scores(gold, preds.labels, ctx.labels).items()
            if key in ("dev_accuracy", "dev_macro_f1")
        }
    probs = dict(zip(held, rows))
    if len(pool) <= OOF_MAX:  # the demonstrations have no held-out prediction: None, skipped by ensembles
        metrics["oof"] = [
            {
                "gold": e.label,
                "probs": probs.get(i),
            }
            for i, e in enumerate(pool)
        ]
    metrics["cv"] = {
        "folds": k,
        "pool": len(pool),
        "method": "held out of the demonstrations",
        "held_out": len(examples),
        "epochs": None,
        "mean_curve": {},
        "fold_scores": scores,
        "fold_std": _fold_std(scores),
        **({"correction": correction} if correction else {}),
    }
    return metrics


def _mean_scores(scores: list[dict]) -> dict:
    """The folds' mean ``dev_*`` scores and majority floor: a cross-validated cell's selection scores."""
    metrics: dict = {}
    for key in ("dev_accuracy", "dev_macro_f1"):
        values = [s[key] for s in scores if key in s]
        if values:
            metrics[key] = statistics.mean(values)
    floors = [s["dev_majority"] for s in scores if "dev_majority" in s]
    if floors:
        metrics["dev_majority"] = {key: statistics.mean(f[key] for f in floors) for key in floors[0]}
    return metrics


def _fold_std(scores: list[dict]) -> dict:
    return {
        key: statistics.stdev([s[key] for s in scores])
        for key in ("dev_accuracy", "dev_macro_f1")
        if len(scores) > 1 and all(key in s for s in scores)
    }


def cv_fit(config, ctx, train: list, dev: list, folds: int, task, build) -> tuple[object, dict]:
    """(the strategy fitted on train + dev with the epochs the folds chose, metrics: the mean fold scores
    as ``dev_*`` and a ``cv`` record). ``build(config, ctx)`` makes a fresh strategy."""
    pool = [*train, *dev]
    if uses_one_prefix(config):
        return _held_out_of_demonstrations(config, ctx, pool, folds, build)
    k = _fold_count(pool, folds)
    index = stratified_folds([e.label for e in pool], k, ctx.seed)
    trains_by_epoch = config.trains_by_epoch()
    fold_config = config
    if config.epoch_patience() is not None:  # full curves: every fold runs every epoch
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
        oof[cfg.calibration_setting() or ""] = held_out
        return curves, scores

    update: dict = {}
    calibration = None
    stopped, lockstep = None, False
    # in-context with a prompt search: its default calibration unless the other clearly wins over the folds
    # (per-query prefixes, selection: similar, take none)
    if config.chooses_calibration():
        labels = len(set(e.label for e in pool))
        default = calibration_default(config.demonstrations_per_class() * labels, labels)
        other = other_calibration(default)
        _, kept = run_folds(fold_config.model_copy(update={"calibration": default}))
        curves, changed = run_folds(fold_config.model_copy(update={"calibration": other}))
        key = f"dev_{ctx.choose_by}"  # the grid's ranking metric (plan.choice_metric)
        calibration = {**choose_non_default(kept, changed, key), "default": default, "by": ctx.choose_by}
        update["calibration"] = other if calibration["chosen"] else default
        scores = changed if calibration["chosen"] else kept
    elif trains_by_epoch and (config.calibration_setting() or "none") == "none":
        # (a calibrated prompt-finetune is calibrated after its fit: scored mid-fit it would not be, so it
        # keeps the curves-then-refits path below)
        curves, scores, oof[""], stopped = _epoch_curves(config, ctx, pool, index, fold_ctx, task, build)
        lockstep = True
    else:
        curves, scores = run_folds(fold_config)
    epochs = choose_epochs(curves) if trains_by_epoch else None
    final_ctx = ctx
    if epochs is not None and lockstep and stopped is None:
        pass  # trained outside the loop's epochs (contrastive): its folds ran the whole fit, nothing to cut
    elif epochs is not None and lockstep:
        # trained as the folds were (the same learning-rate schedule over config.epochs), stopped at the
        # chosen epoch: the deployed model is the procedure the folds scored
        final_ctx = replace(ctx, run=replace(ctx.run, epoch_end=lambda epoch: epoch >= epochs))
    elif epochs is not None:
        update["epochs"] = epochs
        # The curves' fold fits restored their best epoch on the very fold they were then scored and
        # predicted on: a choice made on the held-out examples (on mr, K=16: cv 0.753/0.744 for
        # head-finetune/lora against 0.700/0.662 on test). The scores and out-of-fold predictions come from
        # fold fits of the chosen number of epochs instead, with nothing held out to choose on.
        _, scores = run_folds(fold_config.model_copy(update=update), select=False)
    final_config = config.model_copy(update=update)
    strategy = build(final_config, final_ctx)
    strategy.fit(pool, [])
    if final_ctx is not ctx:  # every such cell says it, so final/ takes the median over all the seeds
        strategy.log.append({"event": "stopped_at_chosen_epoch", "epoch": epochs, "of": config.epochs})
    kept = oof.get(update.get("calibration", config.calibration_setting() or "")) or next(
        iter(oof.values()), None
    )
    strategy, scores, kept, correction = _corrected(strategy, pool, kept, scores, ctx, index)
    complete = kept is not None
    metrics: dict = _mean_scores(scores)
    if complete:  # for an ensemble's weights: no label used twice
        metrics["oof"] = [{"gold": e.label, "probs": p} for e, p in zip(pool, kept)]
    metrics["cv"] = {
        "folds": k,
        "pool": len(pool),
        "epochs": epochs,
        **({"stopped_at": stopped} if stopped is not None else {}),
        **({"calibration": {**calibration, "chosen": update["calibration"]}} if calibration else {}),
        **({"correction": correction} if correction else {}),
        "mean_curve": mean_curve(curves),
        "fold_scores": scores,
        "fold_std": _fold_std(scores),
    }
    return strategy, metrics


def _corrected(strategy, pool: list, kept: list | None, scores: list[dict], ctx, index: list[list[int]]):
    """The decision correction chosen on a cell's out-of-fold predictions (``compare.correction``): (the
    strategy, wrapped when it applies; the fold scores and out-of-fold rows, corrected when its decision is;
    its record). ``kept`` None (or with a gap) on return: no complete out-of-fold predictions."""
    if kept is None or any(p is None for p in kept):
        return strategy, scores, None, None
    from taskfit.compare.correction import correct_held_out

    strategy, corrected, kept, correction = correct_held_out(
        strategy, [e.label for e in pool], kept, ctx, index
    )
    if corrected is not None:
        correction["before"] = _mean_scores(scores)
        scores = corrected
    return strategy, scores, kept, correction


def _epoch_key(curves: list[dict[int, dict]], choose_by: str) -> str:
    """The held-out score an epoch is chosen on: the grid's ranking metric, else accuracy."""
    key = f"dev_{choose_by}"
    return key if any(key in s for c in curves for s in c.values()) else "dev_accuracy"


def _floats(curves: list[dict[int, dict]], key: str) -> list[dict[int, float]]:
    return [{e: float(s[key]) for e, s in c.items() if key in s} for c in curves]


def stop_rule(curves: list[dict[int, float]], epoch: int, patience: int) -> bool:
    """Stop once the mean held-out curve's best epoch (the earliest on a tie) is ``patience`` epochs back.
    Only epochs up to ``epoch`` count (folds run one after another have curves that go further)."""
    curve = mean_curve([{e: v for e, v in c.items() if e <= epoch} for c in curves if c])
    if not curve:
        return False
    best = max(curve.values())
    return epoch - min(e for e, v in curve.items() if v >= best - 1e-12) >= patience


def _epoch_curves(config, ctx, pool: list, index: list[list[int]], fold_ctx, task, build):
    """The folds of a strategy trained by epochs, in lockstep (``compare.lockstep``): each fold is fitted on
    the others with nothing held out to restore a best epoch from, and scores its held-out examples after
    every epoch; all stop once the mean curve has not improved for ``patience`` epochs (or at
    ``config.epochs``). (float curves, each fold's scores, out-of-fold probabilities, the epoch they stopped
    at).

    A fold's score, and its out-of-fold probabilities, are those at the epoch the *other* folds' mean curve
    chooses: no fold is scored at an epoch its own held-out examples chose (nested selection, with no
    refits). The number of epochs the cell deploys is chosen on all the folds. Before issue 38 every fold ran
    all 30 epochs and was then refitted with the chosen number: 2k + 1 fits per cell instead of k + 1
    shorter ones."""
    from taskfit.compare.lockstep import fits_at_once, run_in_lockstep

    labels = ctx.labels
    own = config.epoch_patience()
    patience = min(own, FOLD_PATIENCE) if own is not None else config.epochs
    scored: list[dict[int, dict]] = [{} for _ in index]
    rows: list[dict[int, list[dict]]] = [{} for _ in index]
    keep_rows = len(pool) <= OOF_MAX
    first = [build(config, fold_ctx)]  # fold 0's model: its size says whether k of them fit at once
    together = fits_at_once(len(index), *first[0].trainable_parameters())
    state = {"epoch": 0}

    def decide(epoch: int) -> bool:
        state["epoch"] = max(state["epoch"], epoch)
        key = _epoch_key(scored, ctx.choose_by)
        return stop_rule(_floats(scored, key), epoch, patience)

    def work(fold: int, lockstep) -> None:
        held = set(index[fold])
        fold_train = [e for i, e in enumerate(pool) if i not in held]
        fold_dev = [pool[i] for i in index[fold]]
        holder: dict = {}

        def epoch_end(epoch: int) -> bool:
            scores, predicted = task.selection_with_rows(holder["strategy"], fold_dev, labels)
            scored[fold][epoch] = scores
            if keep_rows:
                rows[fold][epoch] = predicted
            return lockstep.epoch_end(fold, epoch)

        fold_ctx_i = replace(fold_ctx, run=replace(fold_ctx.run, epoch_end=epoch_end))
        if fold == 0:
            strategy = first.pop()  # not held past its fold (folds one after another: memory is tight)
            strategy.ctx = fold_ctx_i
        else:
            strategy = build(config, fold_ctx_i)
        holder["strategy"] = strategy
        strategy.fit(fold_train, [])
        if not scored[fold]:  # trained without the shared loop's epochs: scored once, at the end
            scores, predicted = task.selection_with_rows(strategy, fold_dev, labels)
            scored[fold][config.epochs] = scores
            rows[fold][config.epochs] = predicted

    run_in_lockstep(len(index), work, decide, together)
    key = _epoch_key(scored, ctx.choose_by)
    curves = _floats(scored, key)
    scores, held_out = [], [None] * len(pool)
    for fold, held in enumerate(index):
        others = [c for j, c in enumerate(curves) if j != fold] or curves
        epoch = min(choose_epochs(others) or 1, max(scored[fold]))
        epoch = epoch if epoch in scored[fold] else max(scored[fold])
        scores.append(scored[fold][epoch])
        for i, row in zip(held, rows[fold].get(epoch, [])):
            held_out[i] = row.get("probs")
    return curves, scores, held_out, state["epoch"] or None  # None: trained outside the loop's epochs


def other_calibration(calibration: str) -> str:
    """The other of the two calibrations ``auto`` chooses between."""
    return "none" if calibration == "contextual" else "contextual"


def seed_calibration(verdict: dict, row_choice: str) -> str:
    """A seed's calibration once its row has chosen: the row's choice, unless the seed's own held-out labels
    favour the other one by more than their noise (``gain`` is the non-default's over the default's)."""
    gain, noise = verdict.get("gain"), verdict.get("noise")
    if gain is None or noise is None:
        return row_choice
    against = -gain if row_choice != verdict["default"] else gain  # the other option's gain over the row's
    return other_calibration(row_choice) if against > 0 and against > noise else row_choice


def pool_calibrations(out, records: list[dict]) -> list[str]:
    """``calibration: auto`` per row (strategy, backbone, K): the seeds' held-out gains decide the row's
    calibration (``across_seeds``), which then replaces the built-in default as each seed's starting
    choice; a seed departs from it only on its own clear evidence (``seed_calibration``). A seed whose
    reading changes is read with the calibration its cell scored and saved beside its own choice
    (``alternative/``: held-out scores, out-of-fold and test predictions). Changes ``records`` in place
    (``metrics``, scores, ``files``); returns one line per row for the report. Nothing here reads a test
    label.

    Why not one calibration forced on every seed: which calibration helps depends on the prefix. On issue
    18's runs two single-prefix seeds whose own held-out gain from none was three times its noise (+0.114,
    +0.057) lost 0.11 macro-F1 on test when the row's choice (contextual) was forced on them, while a seed
    whose own check was a tie (-0.002) gained 0.068 from the row's choice (BENCHMARKS.md)."""
    import json
    from pathlib import Path

    rows: dict[tuple, list[dict]] = {}
    for r in records:
        record = ((r.get("metrics") or {}).get("cv") or {}).get("calibration") or {}
        if r.get("status") == "ok" and "applied" in record:
            rows.setdefault((r["strategy"], r["backbone"], str(r["shots"]), record["default"]), []).append(r)
    lines = []
    for (strategy, backbone, shots, default), members in rows.items():
        rule = across_seeds([m["metrics"]["cv"]["calibration"] for m in members])
        if rule is None:
            continue
        row_choice = other_calibration(default) if rule["chosen"] else default
        switched, stuck, own = [], [], []
        for m in members:
            verdict = m["metrics"]["cv"]["calibration"]
            wanted = seed_calibration(verdict, row_choice)
            if wanted != row_choice:
                own.append(m["seed"])
            if verdict["applied"] != wanted:
                folder = f"{m['cell']}/{ALTERNATIVE}"
                try:
                    alt = json.loads((Path(out) / folder / "metrics.json").read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError):
                    alt = {}
                applied = ((alt.get("cv") or {}).get("calibration") or {}).get("applied")
                if alt.get("key") != m["key"] or applied != wanted:
                    stuck.append(m["seed"])  # a cell from before alternatives were saved: left as it chose
                    continue
                m["metrics"], m["files"] = alt, folder
                m.update({key: alt.get(key) for key in ("accuracy", "macro_f1")})
                switched.append(m["seed"])
            m["metrics"]["cv"]["calibration"]["across_seeds"] = {**rule, "chosen": row_choice}
        other = other_calibration(default)
        gain = "not measured" if rule["gain"] is None else f"{rule['gain']:+.3f}"
        noise = "" if rule["noise"] is None else f" against a standard error of {rule['noise']:.3f}"
        line = (
            f"{strategy} ({backbone}), K={shots}: calibration {row_choice} for the row, from the "
            f"{rule['seeds']} seeds' held-out gains of {other} over {default} (mean {gain}{noise}; {other} is "
            f"the row's only when the mean clears it); a seed takes {other_calibration(row_choice)} only "
            "where its own held-out labels favour it by more than their noise"
        )
        line += f": seed(s) {', '.join(map(str, sorted(own)))}" if own else ": none did"
        if switched:
            line += (
                f"; read with the row's rule, not their own: seed(s) {', '.join(map(str, sorted(switched)))}"
            )
        if stuck:
            line += (
                f"; seed(s) {', '.join(map(str, sorted(stuck)))} kept their own choice (no saved alternative)"
            )
        lines.append(line)
    return lines
