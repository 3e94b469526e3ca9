"""The decision correction of a label row, chosen on its held-out predictions (issue 36).

Class weights make a trained head learn the rare label; they do not make its decisions the best ones for
macro-F1, and they do nothing for the rows that train nothing (zero-shot, in-context), whose label words carry
the LM's own priors. After a cell's model is fitted, its held-out predictions (out-of-fold under
cross-validation, else the dev or pool predictions) choose per-label offsets on the log-probabilities:

- ``shares``: a prior shift fitted by (weighted) log loss, so that the probabilities a user reads are
  calibrated to the data's label shares (Saerens et al., 2002, in its simplest form: one bias per label);
- ``decision``: offsets on top of it that maximise the grid's ranking metric on those predictions (for
  accuracy zero: the top label of the calibrated probabilities is already the best guess). Applied, the
  label is the top of ``shares + decision``, whether or not ``shares`` is also applied to the probabilities.

A cross-validated pool over ``cv.OOF_MAX`` examples keeps no out-of-fold predictions and gets no correction.

Whether the decision offsets are used is itself chosen honestly: they are cross-fitted (each part of the
held-out predictions corrected by offsets fitted on the other parts) and taken only when the cross-fitted
gain over the uncorrected labels exceeds one bootstrap standard error (``selection.choose_on_resamples``). The
cell's selection scores are then the cross-fitted corrected ones, so the grid ranks the row by what its
deployed model does. ``shares`` is applied to the returned probabilities when its cross-fitted log loss beats
the model's own.
"""

from __future__ import annotations

import numpy as np

MIN_EXAMPLES = 10  # fewer held-out predictions than this choose nothing
PARTS = 5  # cross-fitting parts (fewer when a label has fewer examples)
RIDGE = 0.05  # on the shares offsets: a label with no held-out example gets a bounded offset


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs, 1e-9, 1.0))


def fit_shares(z: np.ndarray, gold: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray]:
    """(temperature T, one offset per label) minimising the weighted log loss of softmax(z / T + offsets):
    temperature scaling (Guo et al., 2017) with a bias per label, on held-out predictions (L-BFGS; T kept
    within [0.05, 20]). T tempers a model that is too sure of itself, which an average of several models
    would otherwise follow (``strategies.averaged``); it never changes which label is on top."""
    from scipy.optimize import minimize

    n = z.shape[1]
    onehot = np.eye(n)[gold]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        log_t, c = params[0], params[1:]
        inv = np.exp(-log_t)
        s = z * inv + c
        s = s - s.max(axis=1, keepdims=True)
        logq = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        value = -(weight * (onehot * logq).sum(axis=1)).sum() / weight.sum() + RIDGE * (c @ c) / len(gold)
        residual = weight[:, None] * (np.exp(logq) - onehot) / weight.sum()  # d loss / d s
        grad_c = residual.sum(axis=0) + 2 * RIDGE * c / len(gold)
        grad_t = float((residual * z).sum() * -inv)  # d s / d log_t = -z / T
        return float(value), np.concatenate([[grad_t], grad_c])

    bounds = [(np.log(0.05), np.log(20.0))] + [(None, None)] * n
    params = minimize(loss, np.zeros(n + 1), jac=True, method="L-BFGS-B", bounds=bounds).x
    return float(np.exp(params[0])), params[1:] - params[1:].mean()


def fit_decision(z: np.ndarray, gold: np.ndarray, key: str, weight: np.ndarray) -> np.ndarray:
    """Offsets maximising ``key`` of argmax(z + offsets): coordinate ascent over a grid of offsets, each
    label's value the middle of its best ones (a plateau's edge is where a few examples tip it).

    Written here: no library chooses multi-class decision offsets for macro-F1 on fixed scores."""
    from taskfit.compare.selection import _score

    n = z.shape[1]
    d = np.zeros(n)
    if key == "accuracy" or n < 2:
        return d
    grid = np.linspace(-4, 4, 33 if n <= 10 else 17)
    for _ in range(2 if n > 10 else 3):
        before = d.copy()
        for j in range(n):
            values = []
            for v in grid:
                d[j] = v
                values.append(_score(gold, (z + d).argmax(1), n, key, weight))
            best = max(values)
            tops = [g for g, s in zip(grid, values) if s >= best - 1e-12]
            middle = float(np.median(tops))
            d[j] = min(tops, key=lambda g: abs(g - middle))
        if np.allclose(d, before):
            break
    return d - d.mean()


def _offsets(z, gold, key, weight) -> tuple[float, np.ndarray, np.ndarray]:
    temperature, shares = fit_shares(z, gold, weight)
    return temperature, shares, fit_decision(z / temperature + shares, gold, key, weight)


def _log_loss(z: np.ndarray, gold: np.ndarray, weight: np.ndarray) -> float:
    s = z - z.max(axis=1, keepdims=True)
    logq = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-(weight * logq[np.arange(len(gold)), gold]).sum() / weight.sum())


def choose_correction(
    gold: list[str],
    probs: np.ndarray,
    labels: list[str],
    key: str,
    seed: int = 0,
    weight: np.ndarray | None = None,
    parts: list[list[int]] | None = None,
) -> tuple[dict, np.ndarray] | None:
    """(the correction record, the cross-fitted decision scores of every example: each part's from offsets
    fitted on the other parts) for held-out predictions ``probs`` (N x labels, in ``labels`` order); None
    when there are too few to choose on. ``parts`` defaults to stratified parts of ``gold``.

    The record: ``applied`` (a list: "shares" and/or "decision"), the temperature and offsets fitted on
    every example (``temperature``; ``shares``, ``decision``: {label: offset}), the rule's
    ``gain``/``noise``/``chosen`` and the log losses.
    """
    from taskfit.compare.selection import choose_on_resamples
    from taskfit.data.folds import fold_count, stratified_folds

    if len(gold) < MIN_EXAMPLES or len(set(gold)) < 2 or any(g not in labels for g in gold):
        return None
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[g] for g in gold])
    z = _log(np.asarray(probs, dtype=float))
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    if parts is None:
        parts = stratified_folds(list(gold), fold_count(list(gold), PARTS), seed)
    crossed_shares = np.zeros_like(z)
    crossed_decision = np.zeros_like(z)
    for part in parts:
        rest = np.setdiff1d(np.arange(len(y)), part)
        if len(set(y[rest].tolist())) < 2:
            return None
        temperature, shares, decision = _offsets(z[rest], y[rest], key, w[rest])
        crossed_shares[part] = z[part] / temperature + shares
        crossed_decision[part] = z[part] / temperature + shares + decision
    before = [labels[i] for i in z.argmax(1)]
    after = [labels[i] for i in crossed_decision.argmax(1)]
    verdict = choose_on_resamples(list(gold), before, after, list(labels), key, weight=weight)
    temperature, shares, decision = _offsets(z, y, key, w)
    loss = {"model": _log_loss(z, y, w), "shares": _log_loss(crossed_shares, y, w)}
    applied = [
        name
        for name, use in (("shares", loss["shares"] < loss["model"]), ("decision", verdict["chosen"]))
        if use
    ]
    record = {
        "applied": applied,
        "metric": key,
        **verdict,
        "changed": int(sum(a != b for a, b in zip(before, after))),
        "on": len(gold),
        "weighted": weight is not None,
        "log_loss": loss,
        "temperature": temperature,
        "shares": dict(zip(labels, map(float, shares))),
        "decision": dict(zip(labels, map(float, decision))),
    }
    scores = crossed_decision if verdict["chosen"] else z
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return record, e / e.sum(axis=1, keepdims=True)


def describe(record: dict) -> str:
    """One line for the report: what was applied to a row's cell and on what evidence."""
    gain = record.get("gain")
    evidence = (
        f"cross-fitted {record['metric']} gain {gain:+.3f} against a standard error of {record['noise']:.3f} "
        f"on {record['on']} held-out predictions"
        if gain is not None
        else f"{record['on']} held-out predictions"
    )
    if "decision" in record["applied"]:
        offsets = ", ".join(f"{k} {v:+.2f}" for k, v in record["decision"].items())
        what = f"label decision shifted ({offsets}; {record['changed']} held-out labels changed)"
    else:
        what = "labels left as the model ranks them (the shift did not clear its noise)"
    scores = (
        "probabilities calibrated to the data's label shares"
        if "shares" in record["applied"]
        else "probabilities left as the model's"
    )
    return f"{what}, {scores}: {evidence}"


def correct_held_out(strategy, gold: list[str], rows: list[dict], ctx, parts: list[list[int]] | None):
    """A cell's correction from its held-out predictions ``rows`` ({label: probability} per example, in
    ``gold``'s order; ``parts`` split them as the cell's folds did, None: stratified parts). Returns (the strategy, wrapped when
    anything applies; the per-part selection scores, corrected when the decision is; the rows, likewise;
    the record or None)."""
    from taskfit.compare.prior import weights_for
    from taskfit.strategies.corrected import corrected_strategy
    from taskfit.tasks.classification import selection_scores

    labels = list(ctx.labels)
    if not ctx.correct or not labels or any(set(r) != set(labels) for r in rows):
        return strategy, None, rows, None
    probs = np.array([[r[label] for label in labels] for r in rows])
    chosen = choose_correction(
        gold, probs, labels, ctx.choose_by, ctx.seed, weights_for(gold, ctx.prior), parts
    )
    if chosen is None:
        return strategy, None, rows, None
    record, crossed = chosen
    scores = None
    if "decision" in record["applied"]:
        rows = [dict(zip(labels, map(float, p))) for p in crossed]
        predicted = [labels[i] for i in crossed.argmax(1)]
        scores = [
            selection_scores([gold[i] for i in part], [predicted[i] for i in part], labels)
            for part in parts or []
        ]
    return corrected_strategy(strategy, record), scores, rows, record


def cell_correction(metrics: dict) -> dict | None:
    """A finished cell's correction record (cross-validated cells keep it under ``cv``)."""
    return metrics.get("correction") or (metrics.get("cv") or {}).get("correction")


def row_correction(records: list[dict]) -> dict | None:
    """The correction a row's final model carries: each offset vector that most of the row's cells applied,
    at its per-label median over them (every cell fitted its own on its own held-out predictions); None when
    no cell chose one."""
    chosen = [c for r in records if (c := cell_correction(r.get("metrics") or {}))]
    if not chosen:
        return None
    out: dict = {"applied": [], "metric": chosen[0]["metric"], "cells": len(chosen)}
    used = [c for c in chosen if c["applied"]]
    out["temperature"] = float(np.median([c.get("temperature") or 1.0 for c in used])) if used else 1.0
    for key in ("shares", "decision"):
        using = [c for c in chosen if key in c["applied"]]
        out[f"{key}_cells"] = len(using)
        if 2 * len(using) > len(chosen):
            out["applied"].append(key)
        # the decision offsets sit on top of the shares: both travel, whichever applies
        pool = using or used
        if pool:
            out[key] = {label: float(np.median([c[key][label] for c in pool])) for label in pool[0][key]}
    return out
