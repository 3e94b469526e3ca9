"""What the report says when cross-validation chose the rows (``data.selection: cv``, or ``auto`` on a small
file): what the CV estimate costs, and, when no test split exists (true few-shot: every label went into the
folds), that it is the only estimate there is and how wide it is."""

from __future__ import annotations

import statistics

import numpy as np

from taskfit.compare.cv import FOLD_PATIENCE
from taskfit.compare.prior import reweighting_lines, weights_for
from taskfit.compare.selection import BOOTSTRAP_SAMPLES, _score, label_indices


def cv_runs(group) -> list[dict]:
    """The ``cv`` records of a row's finished cells (empty: the row was not cross-validated)."""
    return [cv for r in group.ok if (cv := (r.get("metrics") or {}).get("cv"))]


def scored_on_pools(group) -> bool:
    """A row without training data that a cross-validated grid scored on its trained rows' labelled pools."""
    return any((r.get("metrics") or {}).get("pool_predictions") for r in group.ok)


def pool_scores(group, k: str, key: str) -> dict[int, float]:
    """A row without training data that a cross-validated grid scored on its pools: its ``key`` score on each
    seed's labelled pool at K ``k`` (``{}`` without pool predictions, or for a metric that is not a label
    score). Paired with a trained row seed by seed, these share that row's examples and its sampling noise."""
    if key not in ("accuracy", "macro_f1"):
        return {}
    pools = next((p for r in group.ok if (p := (r.get("metrics") or {}).get("pool_predictions"))), None)
    out = {}
    for name, rows in (pools or {}).items():
        shots, _, seed = name.rpartition("/")
        scored = [r for r in rows if r.get("probs")]
        if shots != k or not scored or not seed.lstrip("-").isdigit():
            continue
        labels = sorted({lab for r in scored for lab in r["probs"]} | {r["gold"] for r in scored})
        gold, pred = label_indices(scored, labels)
        weight = weights_for([r["gold"] for r in scored], getattr(group, "prior", None))
        out[int(seed)] = _score(gold, pred, len(labels), key, weight)
    return out


def fold_scores(group, key: str) -> list[float]:
    """Every fold's score of every seed of a row (the spread of the CV estimate)."""
    return [s[f"dev_{key}"] for cv in cv_runs(group) for s in cv["fold_scores"] if f"dev_{key}" in s]


def oof_interval(group, key: str, labels: list[str], seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval of a row's cross-validated score from its out-of-fold predictions (each label
    predicted once, by the fold that held it out), resampling seeds and examples; None without them."""
    if key not in ("accuracy", "macro_f1"):
        return None
    index = {label: i for i, label in enumerate(labels)}
    runs = []
    for r in group.ok:
        oof = [
            o for o in (r.get("metrics") or {}).get("oof") or [] if o.get("probs")
        ]  # None: a demonstration
        if not oof or any(o["gold"] not in index for o in oof):
            return None
        gold, pred = label_indices(oof, labels)
        weight = weights_for([o["gold"] for o in oof], getattr(group, "prior", None))
        runs.append((gold, pred, np.ones(len(gold)) if weight is None else weight))
    if not runs:
        return None
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(BOOTSTRAP_SAMPLES):
        picked = rng.integers(0, len(runs), len(runs))
        values = []
        for i in picked:
            gold, pred, weight = runs[i]
            rows = rng.integers(0, len(gold), len(gold))
            values.append(_score(gold[rows], pred[rows], len(labels), key, weight[rows]))
        scores.append(np.mean(values))
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


def cv_lines(best, groups: list, n_test: int, labels: list[str]) -> list[str]:
    """Report lines for a grid whose rows were cross-validated (none when no row was)."""
    cross = [g for g in groups if g.ok and cv_runs(g)]
    if not cross:
        return []
    m = best.metric
    folds = sorted({cv["folds"] for g in cross for cv in cv_runs(g)})
    pool = max(cv["pool"] for g in cross for cv in cv_runs(g))
    k = "/".join(map(str, folds))
    lines = []
    if n_test == 0:
        scores = fold_scores(best, m.key) if cv_runs(best) else []
        if scores:
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            seeds = len(cv_runs(best))
            over = f"{len(scores)} folds" + (f" ({seeds} seeds × {k})" if seeds > 1 else "")
            width = f"{m.label} {statistics.mean(scores):.3f} ± {std:.3f} (mean ± std over {over})"
            if seeds > 1:
                width += (
                    " (with every label in the pool a seed changes only the fold assignment, the "
                    "initialisation and in-context's demonstrations, so the spread over seeds measures those)"
                )
            interval = oof_interval(best, m.key, labels)
            if interval:
                width += f", 95% interval {interval[0]:.3f}-{interval[1]:.3f} (bootstrap over its out-of-fold predictions)"
        else:  # no training data: scored once on every label, none of which it learned from
            width = f"{m.label} {best.selection:.3f} on all {pool} labels (it learns from none of them)"
        lines.append(
            f"- **No test split: the cross-validated estimate is the only estimate.** {best.name}: {width}; "
            f"{pool} labelled examples, every one held out once by the {k}-fold cross-validation. Nothing else "
            "checks it, and the folds also chose each row's epochs, so read it as optimistic; the final model "
            f"is trained on all {pool} labels. For an independent check, label more examples and give them "
            "as data.test."
        )
    else:
        lines.append(
            f"- Rows chosen by {k}-fold cross-validation over the {pool} labels of train + dev; test ({n_test} "
            "examples) never chose and is the independent check."
        )
    lines += reweighting_lines(best, groups)
    stops = sorted(
        {
            (c["stopped_at"], c.get("epochs"))
            for g in groups
            for r in g.ok
            if (c := (r.get("metrics") or {}).get("cv") or {}).get("stopped_at")
        }
    )
    stopped = (
        " Their fold curves were stopped together once the mean held-out score had not improved for "
        f"{FOLD_PATIENCE} epochs (at epoch {', '.join(str(a) for a, _ in stops)}), and each fold was scored at the "
        "epoch the other folds chose, so no fold is scored where its own held-out labels chose."
        if stops
        else ""
    )
    lines.append(
        f"- **Cost of cross-validation:** each trained candidate was fitted {folds[-1] + 1} times per seed "
        f"({k} fold fits, trained in lockstep, then one fit on every label that stops at the chosen epoch); "
        "in-context with one demonstration prefix once, scored on every label that is not one of its "
        f"demonstrations; fit s counts them all.{stopped} "
        "Strategies that learn nothing (K=0) are never fitted: they run once, predicting every seed's "
        "labelled pool (the labels the cross-validated rows are ranked on, so they can join their "
        "ensembles)."
    )
    return lines
