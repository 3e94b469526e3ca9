"""Ensemble rows, built after the grid from the probabilities the cells saved (nothing is refitted).

- **seed ensemble**: one row's seed fits, their test probabilities averaged: "lora (seed ensemble of 3)".
- **strategy ensemble**: at each K the top rows by the selection score, weighted by greedy forward selection
  with replacement (Caruana et al., 2004) and applied to the test probabilities seed by seed.

The weights are fitted on out-of-fold predictions when ``data.selection: cv`` recorded them (every labelled
example has exactly one prediction per row, made by the fold model that did not train on it, so no label is
used twice), else on each seed's dev predictions (dev_predictions.jsonl; dev trained no parameter of those rows,
though it did choose their epochs). Test never chooses anything. Ensemble rows are reported beside the
others with their cost (the members' fits summed) and are never chosen for final/, which refits one row.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from taskfit.compare.cv import OOF_MAX, across_seeds
from taskfit.compare.prior import weights_for
from taskfit.compare.selection import _score
from taskfit.compare.store import cell_folder
from taskfit.compare.summary import Group, _fmt, shots_order

PREDICTIONS = "predictions.jsonl"
# the worker's DEV_PREDICTIONS_FILE (not imported from there: the worker imports torch)
DEV_PREDICTIONS = "dev_predictions.jsonl"
POOL_SIZE = 3  # rows a strategy ensemble draws from at each K
KINDS = ("seeds", "strategies")


def ensemble_weights(
    oof: dict[str, list[dict]],
    labels: list[str],
    rounds: int = 20,
    score: str = "accuracy",
    weight: np.ndarray | None = None,
) -> dict[str, float]:
    """{row: weight} summing to 1, from each row's records ({gold, probs}) over the same examples, in the
    same order: ``rounds`` times, add the row that most improves the averaged probabilities' ``score``
    (accuracy or macro_f1; each example counted ``weight`` times, ``compare.prior``); the weights are how
    often each row was added."""
    rows = list(oof)
    golds = [[r["gold"] for r in oof[row]] for row in rows]
    if not rows or any(g != golds[0] for g in golds):
        raise ValueError("out-of-fold predictions must cover the same labelled examples in the same order")
    gold = np.array([labels.index(g) for g in golds[0]])
    probs = {row: np.array([[r["probs"][lab] for lab in labels] for r in oof[row]]) for row in rows}
    counts = dict.fromkeys(rows, 0)
    total = np.zeros((len(gold), len(labels)))
    for step in range(1, rounds + 1):
        scores = {
            row: _score(gold, ((total + probs[row]) / step).argmax(1), len(labels), score, weight)
            for row in rows
        }
        best = max(rows, key=lambda row: (scores[row], -rows.index(row)))  # ties: the earlier (better) row
        counts[best] += 1
        total += probs[best]
    return {row: n / rounds for row, n in counts.items()}


def checked_weights(
    fits: dict[str, list[dict]],
    labels: list[str],
    best: str,
    score: str = "accuracy",
    parts: int = 5,
    weight: np.ndarray | None = None,
) -> tuple[dict[str, float], dict]:
    """(weights, verdict): the greedy weights of ``ensemble_weights`` only when the weighted ensemble beats
    ``best`` (its top member by the selection score) by more than the noise, else all weight on ``best``.

    Greedy selection on a few dozen examples overfits them (issue 18's runs: weights swung from seed to seed
    and the ensemble lost to its best member on test), so the gain is cross-validated over the fitting
    examples themselves: ``parts`` stratified parts, weights fitted on the others and scored on each, paired
    with ``best`` on the same part; kept when the mean gain exceeds one standard error of the paired
    differences (``choose_non_default``, the rule every cross-validated choice uses)."""
    from taskfit.compare.cv import choose_non_default
    from taskfit.data.folds import stratified_folds

    golds = [r["gold"] for r in fits[best]]
    gold = np.array([labels.index(g) for g in golds])
    counts = np.bincount(gold, minlength=len(labels))
    k = max(2, min(parts, int(counts[counts > 0].min())))
    singles, ensembles = [], []
    matrix = {row: _matrix(records, labels) for row, records in fits.items()}
    for part in stratified_folds(golds, k, seed=0) if len(gold) >= k else []:
        held = np.zeros(len(gold), dtype=bool)
        held[part] = True
        rest = {row: [r for r, h in zip(records, held) if not h] for row, records in fits.items()}
        w_rest, w_held = (None, None) if weight is None else (weight[~held], weight[held])
        weights = ensemble_weights(rest, labels, score=score, weight=w_rest)
        probs = sum(w * matrix[row][held] for row, w in weights.items())
        ensembles.append({score: _score(gold[held], probs.argmax(1), len(labels), score, w_held)})
        singles.append({score: _score(gold[held], matrix[best][held].argmax(1), len(labels), score, w_held)})
    verdict = {**choose_non_default(singles, ensembles, score), "parts": len(singles)}
    return mixed_or_best(fits, labels, best, score, verdict["chosen"], weight), verdict


def mixed_or_best(
    fits: dict[str, list[dict]], labels: list[str], best: str, score: str, mix: bool, weight=None
) -> dict[str, float]:
    """The greedy weights on all of ``fits`` when ``mix``, else all weight on ``best``."""
    if not mix:
        return {row: float(row == best) for row in fits}
    return ensemble_weights(fits, labels, score=score, weight=weight)


# -- reading what the cells saved ----------------------------------------------------------------------------


def read_rows(path: Path, labels: list[str]) -> list[dict] | None:
    """A cell's prediction rows when every one has a gold label and a probability for every label."""
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ok = rows and all(r.get("gold") in labels and set(labels) <= set(r.get("probs") or {}) for r in rows)
    return rows if ok else None


def _matrix(rows: list[dict], labels: list[str]) -> np.ndarray:
    return np.array([[r["probs"][lab] for lab in labels] for r in rows], dtype=float)


def _same_examples(runs: list[list[dict]]) -> bool:
    first = [(r.get("text"), r["gold"]) for r in runs[0]]
    return all([(r.get("text"), r["gold"]) for r in run] == first for run in runs[1:])


def _keyed(rows: list[dict]) -> dict[tuple, dict]:
    """Rows by (text, gold, occurrence): the same dev example in two cells' files, whatever the order."""
    seen: dict[tuple, int] = {}
    out = {}
    for r in rows:
        base = (r.get("text"), r["gold"])
        seen[base] = seen.get(base, -1) + 1
        out[(*base, seen[base])] = r
    return out


def _label_metrics(
    gold: list[str], probs: np.ndarray, labels: list[str], prefix: str = "", weight: np.ndarray | None = None
) -> dict:
    """Accuracy and macro-F1 of the probabilities' top labels (each example counted ``weight`` times)."""
    if weight is not None:
        index = np.array([labels.index(g) for g in gold])
        return {
            f"{prefix}{k}": _score(index, probs.argmax(1), len(labels), k, weight)
            for k in ("accuracy", "macro_f1")
        }
    from taskfit.evaluation.metrics import classification_metrics

    m = classification_metrics(gold, [labels[i] for i in probs.argmax(1)], labels)
    return {f"{prefix}{k}": m[k] for k in ("accuracy", "macro_f1")}


def _cost(members: list[dict]) -> dict:
    """What the members cost together: their fits and sizes summed, predicting one after another."""
    rates = [r.get("predict_examples_per_s") for r in members]

    def total(key):
        values = [r.get(key) for r in members]
        return sum(values) if all(v is not None for v in values) else None

    return {
        "fit_seconds": total("fit_seconds"),
        "trainable_params": total("trainable_params"),
        "total_params": total("total_params"),
        "saved_mb": total("saved_mb"),
        "peak_rss_mb": max((r.get("peak_rss_mb") or 0.0 for r in members), default=None),
        "predict_examples_per_s": 1 / sum(1 / r for r in rates) if all(rates) else None,
    }


def _row(
    g: Group, strategy: str, backbone: str, shots: str, kind: str, records: list[dict], fits: int, note: str
) -> Group:
    return Group(
        strategy, backbone, "ensemble", shots, ok=records, metric=g.metric, by=g.by,
        ensemble=kind, fits=fits, note=note,
    )  # fmt: skip


# -- the rows ------------------------------------------------------------------------------------------------


def seed_ensemble(g: Group, out: Path, labels: list[str]) -> Group | None:
    """The row's seed fits, test probabilities averaged (None: fewer than two fits saved probabilities)."""
    members = [r for r in g.ok if r.get("seed") is not None]
    tests = [read_rows(cell_folder(out, r) / PREDICTIONS, labels) for r in members]
    if len(members) < 2 or any(t is None for t in tests) or not _same_examples(tests):  # type: ignore[arg-type]
        return None
    probs = np.mean([_matrix(t, labels) for t in tests], axis=0)  # type: ignore[arg-type]
    record = {"cell": f"{members[0]['cell'].rsplit('/', 1)[0]}/seed-ensemble", "seed": None, "status": "ok"}
    record.update(_label_metrics([r["gold"] for r in tests[0]], probs, labels))  # type: ignore[index]
    record.update(_cost(members))
    # its dev score: the seeds' dev probabilities averaged, which needs every seed to have scored one dev sample
    devs = [read_rows(cell_folder(out, r) / DEV_PREDICTIONS, labels) for r in members]
    keyed = [_keyed(d) for d in devs if d is not None]
    note = "test probabilities of its seed fits averaged"
    if len(keyed) == len(members) and all(k.keys() == keyed[0].keys() for k in keyed):
        keys = list(keyed[0])
        dev = np.mean([_matrix([k[key] for key in keys], labels) for k in keyed], axis=0)
        record.update(_label_metrics([key[1] for key in keys], dev, labels, prefix="dev_"))
    else:
        note += "; not selectable: its seeds were scored on different dev samples or folds (or saved none)"
    name = f"{g.strategy} (seed ensemble of {len(members)})"
    return _row(g, name, g.backbone, g.shots, "seeds", [record], len(members), note)


def _fit_records(record: dict, source: str, out: Path, labels: list[str], pool: str) -> list[dict] | None:
    """A member's records to fit the weights on: its out-of-fold predictions, or (a row without training data
    in a cross-validated grid) its predictions on the ``pool`` ("K/seed") the trained members chose on, or
    its dev predictions."""
    if source == "oof":
        metrics = record.get("metrics") or {}
        oof = metrics.get("oof") or (metrics.get("pool_predictions") or {}).get(pool)
        # probs None: an in-context row's demonstration
        ok = oof and all(r.get("probs") is None or set(labels) <= set(r["probs"]) for r in oof)
        return oof if ok else None
    return read_rows(cell_folder(out, record) / DEV_PREDICTIONS, labels)


def _has_oof(record: dict) -> bool:
    metrics = record.get("metrics") or {}
    return bool(metrics.get("oof") or metrics.get("pool_predictions"))


def _aligned(fits: dict[str, list[dict]], source: str) -> dict[str, list[dict]] | None:
    """The members' fitting records over the same examples in the same order: out-of-fold records by
    position (one labelled pool per seed; a different pool, e.g. augmented, does not align), dev rows by
    text. None when they share no example."""
    names = list(fits)
    if source == "oof":
        golds = [[r["gold"] for r in fits[n]] for n in names]
        if any(g != golds[0] for g in golds):
            return None
        # positions every member predicted (an in-context row has no prediction for its demonstrations)
        keep = [i for i in range(len(golds[0])) if all(fits[n][i].get("probs") is not None for n in names)]
        return {n: [fits[n][i] for i in keep] for n in names} if keep else None
    keyed = {n: _keyed(rows) for n, rows in fits.items()}
    common = [k for k in keyed[names[0]] if all(k in keyed[n] for n in names[1:])]
    return {n: [keyed[n][k] for k in common] for n in names} if common else None


def _member_records(pool: list[Group], seed) -> list[dict] | None:
    """Each pooled row's cell at ``seed`` (a row without training data: its one cell, at every seed)."""
    out = []
    for g in pool:
        match = [r for r in g.ok if r.get("seed") in (seed, None)]
        if not match:
            return None
        out.append(match[0])
    return out


def _weight_score(top: Group) -> str:
    """The score the weights are fitted on: the ranking metric when it is a label score, else accuracy."""
    return top.metric.key if top.metric.key in ("accuracy", "macro_f1") else "accuracy"


def _fit_seed(pool: list[Group], seed, source: str, out: Path, labels: list[str], shots: str, prior=None):
    """(weights, the aligned fitting records, the member cells, the verdict, each example's weight) for one
    seed at K ``shots``, or None. ``prior``: the data's label shares the examples are re-weighted to
    (out-of-fold records only: ``compare.prior``)."""
    members = _member_records(pool, seed)
    if members is None:
        return None
    fits = {g.name: _fit_records(r, source, out, labels, f"{shots}/{seed}") for g, r in zip(pool, members)}
    if any(f is None for f in fits.values()):
        return None
    aligned = _aligned(fits, source)  # type: ignore[arg-type]
    if aligned is None:
        return None
    score = _weight_score(pool[0])
    golds = [r["gold"] for r in next(iter(aligned.values()))]
    weight = weights_for(golds, prior) if source == "oof" else None
    weights, verdict = checked_weights(aligned, labels, pool[0].name, score, weight=weight)  # type: ignore[arg-type]
    return weights, aligned, members, verdict, weight


def strategy_ensemble(
    candidates: list[Group], out: Path, labels: list[str], size: int = POOL_SIZE, prior: dict | None = None
):
    """The top ``size`` rows of one K (``candidates`` best first by the selection score; rows without
    training data join any K) that can be ensembled, weighted per seed on out-of-fold predictions (when two
    rows or more have them; re-weighted to ``prior``, the data's label shares) or else on dev predictions;
    None if fewer than two rows can."""
    if not candidates or candidates[0].by != "dev":  # ranked on test: choosing members would use test
        return None
    has_oof = [g for g in candidates if all(_has_oof(r) for r in g.ok)]
    source = "oof" if len(has_oof) >= 2 else "dev"
    trained = [g.shots for g in candidates if g.shots != "0"]
    k = max(trained, key=shots_order) if trained else "0"  # one K and the rows without training data
    seeds = sorted({r["seed"] for g in candidates for r in g.ok if r.get("seed") is not None}) or [None]
    pool: list[Group] = []
    left_out: list[Group] = []  # rows ranked above the last member that could not join
    for g in candidates:  # best first; a row joins when every seed can still be fitted with it
        if len(pool) == size:
            break
        if all(_fit_seed([*pool, g], s, source, out, labels, k, prior) for s in seeds):
            pool.append(g)
        else:
            left_out.append(g)
    if len(pool) < 2:
        return None
    above = [g for g in left_out if candidates.index(g) < candidates.index(pool[-1])]
    shots = max((g.shots for g in pool), key=shots_order)  # the K of its trained members
    records, weights_seen = [], {g.name: [] for g in pool}
    usable = {}  # seeds whose members' test predictions can be combined: only they report, and decide
    for seed in seeds:
        fitted = _fit_seed(pool, seed, source, out, labels, k, prior)
        tests = [read_rows(cell_folder(out, r) / PREDICTIONS, labels) for r in fitted[2]] if fitted else []
        if fitted and all(t is not None for t in tests) and _same_examples(tests):  # type: ignore[arg-type]
            usable[seed] = (fitted, tests)
    row_rule = across_seeds([fitted[3] for fitted, _ in usable.values()])
    score = _weight_score(pool[0])
    for seed, (fitted, tests) in usable.items():
        weights, aligned, members, verdict, weight = fitted
        if row_rule is not None:  # one decision for the row, from every seed's gain
            weights = mixed_or_best(aligned, labels, pool[0].name, score, row_rule["chosen"], weight)
            verdict = {**verdict, "seed_chosen": verdict["chosen"], "chosen": row_rule["chosen"]}
        probs = sum(w * _matrix(t, labels) for w, t in zip(weights.values(), tests))  # type: ignore[arg-type]
        record = {"cell": f"ensemble/k{shots}/seed-{seed}", "seed": seed, "status": "ok"}
        record.update(_label_metrics([r["gold"] for r in tests[0]], probs, labels))  # type: ignore[index]
        fit = sum(w * _matrix(rows, labels) for w, rows in zip(weights.values(), aligned.values()))
        fit_golds = [r["gold"] for r in next(iter(aligned.values()))]
        record.update(_label_metrics(fit_golds, fit, labels, "dev_", weight))
        record.update(_cost(members))
        record["weights"], record["fitted_on"] = weights, len(next(iter(aligned.values())))
        record["weighted"] = verdict  # kept the greedy weights, or the best member alone, and why
        records.append(record)
        for name, w in weights.items():
            weights_seen[name].append(w)
    if not records:
        return None
    where = (
        "out-of-fold predictions (each labelled example predicted once per row, by a fold model that did "
        "not train on it)"
        if source == "oof"
        else "each seed's dev predictions (dev trained none of the rows' parameters but chose their epochs)"
    )
    kept = sum(bool(r["weighted"]["chosen"]) for r in records)
    gains = [r["weighted"]["gain"] for r in records if r["weighted"]["gain"] is not None]
    if row_rule is not None and row_rule["noise"] is None:
        verdict_text = (
            f"the weighted mix was kept on no seed: fewer than two seeds' pools were large enough to "
            f"cross-validate its gain over {pool[0].name}, so the row is {pool[0].name} alone"
        )
    elif row_rule is not None:
        verdict_text = (
            f"the weighted mix {'was kept on every seed' if row_rule['chosen'] else 'was kept on no seed'}: "
            f"its gain over {pool[0].name}, cross-validated within each seed's predictions, averaged "
            f"{row_rule['gain']:+.3f} over {row_rule['seeds']} seeds against a standard error of "
            f"{row_rule['noise']:.3f} over the seeds (kept only when the mean beats it)"
            + ("" if row_rule["chosen"] else f", so the row is {pool[0].name} alone")
        )
    else:
        verdict_text = (
            f"the weighted mix was kept on {kept} of {len(records)} seeds, where its gain over {pool[0].name}, "
            "cross-validated over those predictions, beat one standard error"
            + (f" (mean gain {statistics.mean(gains):+.3f})" if gains else "")
            + f"; elsewhere the row is {pool[0].name} alone"
        )
    note = (
        "weights " + ", ".join(f"{n} {statistics.mean(w):.2f}" for n, w in weights_seen.items())
        + f" (mean over seeds), fitted on {where}; {verdict_text}; its dev score is the one the weights were "
        "fitted on (optimistic)"
        + (
            "; ranked above a member but left out, having no predictions on the same labelled examples: "
            + ", ".join(g.name for g in above)
            + " (a row without training data has them when a cross-validated grid had it predict every "
            f"seed's pool, up to {OOF_MAX:,} examples in all; folders from before taskfit did: rerun the grid)"
            if above else ""
        )
    )  # fmt: skip
    repeated = [g.strategy for g in pool]  # a strategy on two backbones: each named with its backbone
    name = "ensemble of " + " + ".join(g.name if repeated.count(g.strategy) > 1 else g.strategy for g in pool)
    backbones = "/".join(dict.fromkeys(g.backbone for g in pool))
    fits = sum(len(g.ok) for g in pool)
    return _row(pool[0], name, backbones, shots, "strategies", records, fits, note)


def ensemble_rows(
    groups: list[Group], out: Path, labels: list[str], kinds=KINDS, prior: dict | None = None
) -> list[Group]:
    """The ensemble rows ``kinds`` asks for, in the leaderboard's order (by K, then the row they come from)."""
    ok = [g for g in groups if g.ok and not g.ensemble]
    rows: list[Group] = []
    for k in sorted({g.shots for g in ok if g.shots != "0"}, key=shots_order):
        if "strategies" in kinds:
            at_k = sorted((g for g in ok if g.shots in (k, "0")), key=lambda g: -g.rank)
            row = strategy_ensemble(at_k, out, labels, prior=prior)
            if row is not None:
                rows.append(row)
        if "seeds" in kinds:
            rows += [e for g in ok if g.shots == k and (e := seed_ensemble(g, out, labels)) is not None]
    return rows


def ensemble_lines(ensembles: list[Group], recommended: Group | None) -> list[str]:
    """The recommendation's line on the ensembles at the recommended row's K (or the largest)."""
    if not ensembles:
        return []
    ks = sorted({g.shots for g in ensembles}, key=shots_order)
    ref = recommended.shots if recommended is not None and recommended.shots in ks else ks[-1]
    at = [g for g in ensembles if g.shots == ref]
    m = at[0].metric
    parts = []
    for g in at:
        d = g.as_dict()
        test = _fmt(d[f"{m.key}_mean"], d[f"{m.key}_std"], m)
        dev = "not selectable" if g.selection is None else f"dev {_fmt(g.selection, None, m)}"
        parts.append(f"{g.name} {dev}, test {test}")
    line = (
        f"- **Ensembles at K={ref}** (reported, never chosen: final/ refits a single row): "
        + "; ".join(parts)
        + "."
    )
    if recommended is not None and recommended.selection is not None:
        ahead = [g.name for g in at if g.selection is not None and g.rank > recommended.rank]
        if ahead:
            line += f" Ahead of the recommended row on dev: {', '.join(ahead)}."
    return [line]


def ensemble_notes(ensembles: list[Group]) -> list[str]:
    """One note per ensemble row: how it was built and what it costs."""
    return [
        f"{g.name}, K={g.shots}: {g.note}; cost: its {g.fits} fits summed (fit s), predicting with each in turn"
        for g in ensembles
    ]


def csv_records(ensembles: list[Group]) -> list[dict]:
    """cells.csv rows for the ensemble rows (status 'ensemble'; never written to taskfit.db)."""
    return [
        {**r, "strategy": g.strategy, "backbone": g.backbone, "method": "ensemble", "shots": g.shots,
         "status": "ensemble"}
        for g in ensembles for r in g.ok
    ]  # fmt: skip
