"""The final model: after the grid, the recommended row refitted on every labelled example (train + dev).

A grid cell learns from K examples per class while the dev sample chooses its best epoch; the model a user
deploys should learn from every label they have. Nothing is held out for early stopping here, so the
number of epochs is the one the grid's cells chose on dev (the median of their restored best epochs), and
in-context's ``calibration: auto`` takes the row's choice (decided over its seeds). The folder ``runs/NAME/final/`` is a
normal run folder (``model/``) with a card (``final.json``, ``README.md``) saying what was chosen, why, on
how many labels, and the grid's estimate of its score. When the report cannot tell other rows apart from the
recommended one, they are refitted too and final/ averages them with equal weights (``final_members``;
``strategies.averaged``), each carrying the decision correction its cells chose (``compare.correction``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from taskfit.errors import TaskfitError
from taskfit.io import write_json_atomic, write_jsonl_atomic, write_text_atomic

FINAL_DIR = "final"
AUTO_MAX = 2000  # unasked (final unset), a final model is fitted on a user's own file up to this many labels
CARD = "final.json"


def _logs(out: Path, group) -> list[list[dict]]:
    logs = []
    for r in group.ok:
        path = out / r["cell"] / "train_log.jsonl"
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            logs.append([json.loads(line) for line in lines if line.strip()])
    return logs


def chosen_epochs(logs: list[list[dict]]) -> int | None:
    """The epoch count the cells' dev sets chose: the median restored best epoch (at least 1), else the
    median number of epochs trained; None when no cell trained by epochs."""
    counts = []
    for log in logs:
        restored = [e["epoch"] for e in log if e.get("event") == "restored_best"]
        trained = [e["epoch"] for e in log if "event" not in e and isinstance(e.get("epoch"), int)]
        if restored:
            counts.append(restored[-1])
        elif trained:
            counts.append(max(trained))
    return max(1, round(statistics.median(counts))) if counts else None


def final_settings(strategy, group, logs: list[list[dict]]) -> tuple[object, dict]:
    """The strategy config for the final fit and what was changed from the grid's (and why)."""
    update: dict = {}
    chosen = group.as_dict()["chosen"]
    if chosen:  # search: the values most seeds chose
        for key in chosen[0]:
            update[key] = Counter(json.dumps(c.get(key)) for c in chosen).most_common(1)[0][0]
            update[key] = json.loads(update[key])
    stopped = [e["epoch"] for log in logs for e in log if e.get("event") == "stopped_at_chosen_epoch"]
    stop_at = None
    if stopped:  # cross-validated cells trained on the full schedule and stopped at their chosen epoch
        stop_at = max(1, round(statistics.median(stopped)))
    elif strategy.trains_by_epoch() and (n := chosen_epochs(logs)) is not None:
        update["epochs"] = n
    if strategy.chooses_calibration():
        # the row's calibration, decided over its seeds (compare.cv.pool_calibrations: a seed's departures
        # are its own prefix's, and the final prefix is another), else what the cells were read with, else
        # what each cell chose on its own
        verdicts = [((r["metrics"].get("cv") or {}).get("calibration") or {}) for r in group.ok]
        rows = [(v.get("across_seeds") or {}).get("chosen") for v in verdicts]
        picks = (
            [c for c in rows if c]
            or [v["applied"] for v in verdicts if v.get("applied")]
            or [
                e["chosen"]
                for log in logs
                for e in log
                if e.get("event") == "calibration" and e.get("chosen")
            ]
        )
        if picks:
            update["calibration"] = Counter(picks).most_common(1)[0][0]
    config = strategy.model_copy(update=update)
    if stop_at is not None and stop_at < config.epochs:
        update["stopped_at_epoch"] = stop_at  # not a config setting: the fit is stopped there (fit_final)
    return config, update


def check_final(config) -> None:
    """Refuse, before anything trains, a ``final:`` that names no strategy of the grid."""
    if config.final in (None, "auto", "none"):
        return
    ids = [s.run_id for s in config.strategies]
    if config.final not in ids:
        raise TaskfitError(
            f"final: '{config.final}' is not a strategy id of this grid; one of {', '.join(ids)} (or none)"
        )
    from taskfit.tasks import get_task

    if not get_task(config.task).fits_final:
        raise TaskfitError(
            f"final: a final model is fitted for classification grids only (task: {config.task}); use final: none"
        )


def pick_row(groups, final: str | None):
    """The row to refit: ``final`` names a strategy id (else the recommended row: the first ranked one
    that beats the majority-class predictor)."""
    ok = [g for g in groups if g.ok]
    if final not in (None, "auto"):
        named = [g for g in ok if g.strategy == final]
        if not named:
            ids = sorted({g.strategy for g in ok})
            raise TaskfitError(
                f"final: '{final}' is not a finished row of this grid; one of {', '.join(ids)}"
            )
        return max(named, key=lambda g: g.rank), f"named in the config (final: {final})"
    return None, ""


def fit_final(config, out: Path, groups, recommended, pools, stream=None, close: list = ()) -> dict | None:
    """Refit the chosen row on train + dev and write ``out/final``; returns the card (None: skipped).
    ``close``: rows not distinguishable from ``recommended`` (``summary.final_members``): with ``final:
    auto`` they are refitted too and ``final/`` averages them with equal weights."""
    from taskfit.compare.fewshot import cv_runs

    stream = stream or sys.stdout
    if config.final == "none":
        return None
    labelled = [*pools.train, *pools.dev]
    if config.final is None and (config.data.dataset is not None or len(labelled) > AUTO_MAX):
        # unasked, a built-in benchmark's or a large pool's refit could take longer than the grid itself
        why = (
            f"a built-in dataset ({config.data.dataset})"
            if config.data.dataset
            else f"{len(labelled)} labels"
        )
        print(
            f"final: not fitted by default for {why}; set final: auto (the recommended row) or final: <id>",
            file=stream,
        )
        return None
    group, why = pick_row(groups, config.final)
    members = [group] if group is not None else []
    if group is None:
        if recommended is None:
            print("final: nothing was recommended, so no final model is fitted", file=stream)
            return None
        on = "cross-validated" if cv_runs(recommended) else "on dev"
        group, why = recommended, f"the recommended row (best {on}, above the majority-class predictor)"
        members = [recommended, *[g for g in close if g is not recommended]][: config.final_members]
    plans = [p for g in members if (p := _member_plan(config, out, g)) is not None]
    if not plans or plans[0][0] is not group:
        return None
    if len(plans) > 1:
        why = (
            f"{why}, averaged with equal weights with the row(s) not distinguishable from it "
            f"({', '.join(g.name for g, _, _ in plans[1:])}; paired over seeds, p >= 0.05): on this many labels "
            "the pick among them is close to a coin toss, and their average needs no labels to weigh it"
        )
    key = hashlib.sha256(
        json.dumps(
            [
                [
                    [s.model_dump(mode="json"), c.get("stopped_at_epoch"), member_correction(config, g, s)]
                    for g, s, c in plans
                ],
                [(e.text, e.label) for e in labelled],
                config.prompt and config.prompt.model_dump(mode="json"),
            ],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:16]
    directory = out / FINAL_DIR
    card_path = directory / CARD
    if card_path.exists() and (directory / "model").exists():
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if card.get("key") == key:
            print(f"final: {directory} is up to date", file=stream)
            return card
    names = " + ".join(g.name for g, _, _ in plans)
    print(f"final: fitting {names} on all {len(labelled)} labelled examples -> {directory}", file=stream)
    from taskfit.strategies import BackboneCache

    backbones = BackboneCache(config.trust_remote_code, config.device)  # members on one LM load it once
    fitted = [
        _fit_member(config, g, settings, changed, pools, labelled, backbones)
        for g, settings, changed in plans
    ]
    if len(fitted) == 1:
        model = fitted[0][0]
        log = model.log
    else:
        from taskfit.strategies.averaged import Averaged

        model = Averaged([f[0] for f in fitted], [g.name for g, _, _ in plans], list(pools.labels))
        log = [{**e, "member": g.name} for (g, _, _), (m, _, _) in zip(plans, fitted) for e in m.log]
    staging = directory / ".model.tmp"  # the earlier final model stays until this one is whole
    shutil.rmtree(staging, ignore_errors=True)
    model.save(staging)
    card_path.unlink(missing_ok=True)  # a crash before the new card is written must not pass as up to date
    shutil.rmtree(directory / "model", ignore_errors=True)  # an earlier final/'s members would linger
    staging.rename(directory / "model")
    write_jsonl_atomic(directory / "train_log.jsonl", log)
    card = _card(key, group, why, plans, fitted, labelled, pools)
    write_json_atomic(card_path, card)
    write_text_atomic(directory / "README.md", card_text(card, group.metric.label))
    return card


def _card(key: str, group, why: str, plans: list, fitted: list, labelled: list, pools) -> dict:
    """final.json: what was chosen and why, on how many labels, the settings, and the grid's estimate."""
    from taskfit.compare.fewshot import cv_runs

    fit_seconds = sum(f[1] for f in fitted)
    m = group.metric
    d = group.as_dict()
    _, settings, changed = plans[0]
    card = {
        "key": key,
        "row": group.strategy if len(plans) == 1 else "ensemble",
        "backbone": group.backbone
        if len(plans) == 1
        else " + ".join(dict.fromkeys(g.backbone for g, _, _ in plans)),
        "why": why,
        # cross-validated rows keep their fold scores as dev_*: say which it was
        "ranked_by": d["ranked_by"].replace(" on dev", " cross-validated")
        if cv_runs(group)
        else d["ranked_by"],
        "labelled_examples": len(labelled),
        "train_examples": len(pools.train),
        "dev_examples": len(pools.dev),
        "labels": list(pools.labels),
        "settings": settings.model_dump(mode="json"),
        "changed_from_grid": changed,
        "grid_row": {"K": group.shots, "seeds": d["runs"]},
        "estimate": {
            "metric": m.key,
            "dev_mean": d["selection_mean"],
            "dev_std": d["selection_std"],
            "test_mean": d[f"{m.key}_mean"],
            "test_std": d[f"{m.key}_std"],
            "test_interval_95": d["test_interval"],
        },
        "fit_seconds": fit_seconds,
        "correction": fitted[0][2],
    }
    if len(plans) > 1:
        card["members"] = [
            {
                "row": g.strategy,
                "backbone": g.backbone,
                "settings": s.model_dump(mode="json"),
                "changed_from_grid": c,
                "correction": f[2],
            }
            for (g, s, c), f in zip(plans, fitted)
        ]
        card["estimate"]["ensemble"] = ensemble_estimate([g for g, _, _ in plans], list(pools.labels), m.key)
    return card


def _member_plan(config, out: Path, group):
    """(the row, its final settings, what changed from the grid's) for one row of final/; None when the
    config has no such strategy."""
    strategy_config = next(  # the row's own backbone: one strategy id may list several (backbone: [a, b])
        (s for s in config.strategies if s.run_id == group.strategy and s.backbone == group.backbone),
        next((s for s in config.strategies if s.run_id == group.strategy), None),
    )
    if strategy_config is None:
        return None
    settings, changed = final_settings(strategy_config, group, _logs(out, group))
    return group, settings, changed


def member_correction(config, group, settings) -> dict | None:
    """The decision correction a row's final model carries: the one its cells chose on their held-out
    predictions (``correction.row_correction``), from the cells read with the calibration the final model
    uses (in-context's two calibrations give different scores to correct)."""
    from taskfit.compare.correction import row_correction

    if not config.correction:
        return None
    calibration = settings.calibration_setting()

    def same(r: dict) -> bool:
        applied = (((r.get("metrics") or {}).get("cv") or {}).get("calibration") or {}).get("applied")
        return applied is None or calibration in (None, "auto") or applied == calibration

    return row_correction([r for r in group.ok if same(r)])


def _fit_member(config, group, settings, changed: dict, pools, labelled: list, backbones):
    """One row fitted on every label, with the decision correction its cells chose: (strategy, fit
    seconds, the correction or None)."""
    from taskfit.strategies import Context, build_strategy
    from taskfit.strategies.corrected import corrected_strategy

    ctx = Context(
        labels=list(pools.labels),
        prompt=config.prompt,
        seed=config.seeds[0],
        backbones=backbones,
        no_relation_label=config.data.no_relation_label,
    )
    if "stopped_at_epoch" in changed:  # the procedure the folds scored: config.epochs' schedule, cut there
        from dataclasses import replace

        stop_at = changed["stopped_at_epoch"]
        ctx.run = replace(ctx.run, epoch_end=lambda epoch: epoch >= stop_at)
    strategy = build_strategy(settings, ctx)
    started = time.perf_counter()
    strategy.fit(labelled, [])  # no dev: every label trains; the epoch count was chosen by the grid
    fit_seconds = time.perf_counter() - started
    correction = member_correction(config, group, settings)
    return corrected_strategy(strategy, correction), fit_seconds, correction


def ensemble_estimate(members: list, labels: list[str], key: str) -> dict | None:
    """The equal-weight average's cross-validated score: per seed, the members' held-out predictions on the
    same labelled pool (out-of-fold, or a row without training data's predictions on that pool; aligned as
    the report's ensembles align them, ``compare.ensemble``) averaged and scored; the mean and spread over
    the seeds every trained member ran. None when some member kept none."""
    import numpy as np

    from taskfit.compare.ensemble import _aligned, _fit_records, _matrix
    from taskfit.compare.selection import _score

    trained = [g for g in members if g.shots != "0"]
    # the seeds every trained member ran (the race may have stopped one after its first)
    seeds = (
        sorted(set.intersection(*[{r.get("seed") for r in g.ok} for g in trained]) - {None})
        if trained
        else []
    )
    shots = trained[0].shots if trained else None
    index = {label: i for i, label in enumerate(labels)}
    scores = []
    for seed in seeds or [None]:
        fits = {}
        for g in members:
            record = g.ok[0] if g.shots == "0" else next((r for r in g.ok if r.get("seed") == seed), {})
            rows = _fit_records(record, "oof", None, labels, f"{shots}/{seed}")
            if not rows:
                return None
            fits[g.name] = rows
        aligned = _aligned(fits, "oof")  # the examples every member predicted held out, in one order
        if aligned is None:
            return None
        first = next(iter(aligned.values()))
        gold = np.array([index[r["gold"]] for r in first])
        mean = sum(_matrix(rows, labels) for rows in aligned.values())
        scores.append(_score(gold, mean.argmax(1), len(labels), key))
    return {
        "metric": key,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,
        "seeds": len(scores),
        "on": "held-out predictions of the grid's cells (out of fold), averaged with equal weights",
    }


def card_text(card: dict, label: str) -> str:
    est = card["estimate"]
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    interval = est["test_interval_95"]
    members = card.get("members") or []
    lines = [
        f"# Final model: {card['row']} ({card['backbone']})",
        "",
        f"- **Why this row:** {card['why']}; ranked by {card['ranked_by']}.",
        *(
            [
                "- **Members** (each refitted on every label; the label is the top of their averaged scores): "
                + "; ".join(
                    f"{mem['row']} ({mem['backbone']}), changed from the grid: {mem['changed_from_grid'] or 'none'}"
                    for mem in members
                )
                + ".",
                ensemble_line(est.get("ensemble"), label),
            ]
            if members
            else []
        ),
        f"- **Trained on** every labelled example: {card['labelled_examples']} "
        f"({card['train_examples']} train + {card['dev_examples']} dev), not the grid's K={card['grid_row']['K']} sample.",
        f"- **Settings changed from the grid's:** {card['changed_from_grid'] or 'none'}"
        + "".join(
            why
            for key, why in (
                ("epochs", " (the number of epochs the grid chose: nothing is held out here to stop early)"),
                (
                    "stopped_at_epoch",
                    " (trained on the grid's learning-rate schedule and stopped at the epoch its folds chose, "
                    "as the cross-validated estimate was measured)",
                ),
                ("calibration", " (the calibration the grid's row chose over its seeds)"),
            )
            if key in (card["changed_from_grid"] or {})
        )
        + ".",
        f"- **Estimate of its {label}** (from the grid row, {card['grid_row']['seeds']} seed(s), trained on fewer "
        f"labels, so likely an underestimate): "
        + (
            f"dev {fmt(est['dev_mean'])}, test {fmt(est['test_mean'])}"
            + (f" (95% CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
            if est["test_mean"] is not None
            else f"{fmt(est['dev_mean'])}"
            + (f" ± {est['dev_std']:.3f}" if est["dev_std"] is not None else "")
            + (
                " on every label (a row that learns nothing)"
                if card["grid_row"]["K"] == "0"
                else " cross-validated (each label scored by a model that did not learn from it)"
            )
            + ", the only estimate: no test split"
        )
        + ". This model itself has no held-out score: every label trained it.",
        correction_line(card.get("correction")),
        "",
        f"Use it: `taskfit predict {Path('runs') / '<name>'} --input FILE`, `taskfit serve`, `taskfit export` "
        "given the grid folder use this folder.",
    ]
    return "\n".join(lines) + "\n"


def correction_line(correction: dict | None) -> str:
    """The card's line on the decision correction the final model applies (issue 36)."""
    if not correction or not correction["applied"]:
        return "- **Decision correction:** none (no cell of the row chose one on its held-out predictions)."
    parts = []
    if "decision" in correction["applied"]:
        offsets = ", ".join(f"{k} {v:+.2f}" for k, v in correction["decision"].items())
        parts.append(
            f"labels decided with per-label offsets for {correction['metric']} ({offsets}; the median over "
            f"the {correction['decision_cells']} of {correction['cells']} grid cells that chose them out of fold)"
        )
    if "shares" in correction["applied"]:
        parts.append("`probabilities` (predict and serve) calibrated to the data's label shares")
    return "- **Decision correction:** " + "; ".join(parts) + "."


def ensemble_line(estimate: dict | None, label: str) -> str:
    if not estimate:
        return "- **Estimate of the average:** none (a member kept no held-out predictions to average)."
    spread = f" ± {estimate['std']:.3f}" if estimate.get("std") is not None else ""
    return (
        f"- **Estimate of the average's {label}:** {estimate['mean']:.3f}{spread} over {estimate['seeds']} "
        "seed(s), from the members' held-out predictions averaged (the estimate below is the recommended row's "
        "alone)."
    )
