"""Cross-validated scores re-weighted to the label shares of the data the K-shot pools were drawn from.

A K-shot pool holds K examples of every label, whatever the user's data; test, and the texts a deployed model
meets, follow the data's own shares. On such a balanced pool macro-F1 overstates a row that answers a
minority label too often (its precision there falls once that label is rare) and understates one that leans
to the majority. On tweets-sentiment (69% positive) at K=16 that decided the recommendation: in-context over
4 demonstration sets scored 0.841 on the pools and zero-shot 0.817, and on test 0.787 against 0.840
(BENCHMARKS.md, issue 18). Counting each pool example ``share in the data / share in the pool`` times makes
the pool's scores estimate the scores at the data's shares: importance-weighted cross-validation under label
shift (Sugiyama, Krauledat & Müller, 2007). The data's shares come from its labelled examples (train + dev
before sampling), never from test. A pool that already has them (``shots: all``) gets no weights.

Applied after the grid from the predictions the cells saved (out-of-fold and pool predictions), so nothing
is refitted: the rows' selection scores and majority floors, the pairing of rows, and the ensembles' weights.
"""

from __future__ import annotations

import statistics
from collections import Counter

import numpy as np

from taskfit.compare.selection import _score, label_indices

TOLERANCE = 0.02  # a pool within this of the data's shares on every label is scored as it is


def label_shares(examples) -> dict[str, float]:
    """{label: share} among examples with a label."""
    counts = Counter(getattr(e, "label", None) for e in examples)
    counts.pop(None, None)
    total = sum(counts.values())
    return {label: n / total for label, n in sorted(counts.items())} if total else {}


def weights_for(golds: list[str], prior: dict[str, float] | None) -> np.ndarray | None:
    """Each example's weight (its label's share in ``prior`` over its share among ``golds``), or None when
    no weighting applies: no prior, a gold label the prior lacks, or shares already within TOLERANCE."""
    if not prior or not golds or any(g not in prior for g in golds):
        return None
    pool = Counter(golds)
    shares = {label: pool[label] / len(golds) for label in pool}
    if all(abs(prior[label] - shares.get(label, 0.0)) <= TOLERANCE for label in prior):
        return None
    return np.array([prior[g] / shares[g] for g in golds])


def weighted_scores(rows: list[dict], labels: list[str], prior: dict[str, float] | None) -> dict | None:
    """Accuracy, macro-F1 and the majority floor (always the data's most frequent label) of prediction rows
    ({gold, probs}; rows without probs skipped), re-weighted to ``prior``; None when no weighting applies."""
    scored = [r for r in rows if r.get("probs")]
    golds = [r["gold"] for r in scored]
    weight = weights_for(golds, prior)
    if weight is None or any(g not in labels for g in golds):
        return None
    gold, pred = label_indices(scored, labels)
    majority = np.full(len(gold), labels.index(max(prior, key=prior.get)))  # type: ignore[arg-type]
    keys = ("accuracy", "macro_f1")
    return {
        **{f"dev_{k}": _score(gold, pred, len(labels), k, weight) for k in keys},
        "dev_majority": {k: _score(gold, majority, len(labels), k, weight) for k in keys},
        "pool_shares": {label: n / len(golds) for label, n in sorted(Counter(golds).items())},
    }


def reweight_records(records: list[dict], prior: dict[str, float], labels: list[str]) -> int:
    """Replace the selection scores (``dev_accuracy``, ``dev_macro_f1``) and majority floors of finished
    cross-validated records by their re-weighted values, in place (the database keeps the originals; the
    unweighted ones are kept under ``metrics["reweighted"]``). A trained or in-context row is scored on its
    out-of-fold predictions, a row without training data on each seed's pool (mean over the pools). Returns
    how many records changed."""
    changed = 0
    for r in records:
        metrics = r.get("metrics") or {}
        if r.get("status") != "ok":
            continue
        if metrics.get("oof") and metrics.get("cv"):
            scores = weighted_scores(metrics["oof"], labels, prior)
        elif metrics.get("pool_predictions"):
            per_pool = [weighted_scores(rows, labels, prior) for rows in metrics["pool_predictions"].values()]
            scores = _mean_scores(per_pool) if per_pool and all(per_pool) else None
        else:
            scores = None
        if scores is None:
            continue
        before = {k: metrics.get(k, r.get(k)) for k in ("dev_accuracy", "dev_macro_f1", "dev_majority")}
        for k in ("dev_accuracy", "dev_macro_f1", "dev_majority"):
            metrics[k] = scores[k]
            if k in r:
                r[k] = scores[k]
        metrics["reweighted"] = {"prior": prior, "pool_shares": scores["pool_shares"], "unweighted": before}
        r["metrics"] = metrics
        changed += 1
    return changed


def _mean_scores(per_pool: list[dict]) -> dict:
    keys = ("accuracy", "macro_f1")
    return {
        **{f"dev_{k}": statistics.mean(s[f"dev_{k}"] for s in per_pool) for k in keys},
        "dev_majority": {k: statistics.mean(s["dev_majority"][k] for s in per_pool) for k in keys},
        "pool_shares": per_pool[0]["pool_shares"],
    }


def _shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{label} {share:.0%}" for label, share in shares.items())


def reweighting_lines(best, groups: list) -> list[str]:
    """The report's line on the re-weighting (none when no row's scores were re-weighted)."""
    done = [r for g in groups for r in g.ok if (r.get("metrics") or {}).get("reweighted")]
    if not done or not best.prior:
        return []
    info = done[0]["metrics"]["reweighted"]
    key = f"dev_{best.metric.key}"
    before = [
        v
        for r in best.ok
        if (v := ((r.get("metrics") or {}).get("reweighted") or {}).get("unweighted", {}).get(key))
        is not None
    ]
    was = (
        f" ({best.name}: {statistics.mean(before):.3f} unweighted, {best.selection:.3f} re-weighted)"
        if before and best.selection is not None
        else ""
    )
    return [
        f"- **Scores re-weighted to your data's label shares** ({_shares(best.prior)}; the K-shot pools hold "
        f"{_shares(info['pool_shares'])}): each labelled example counts its label's share in the data over its "
        "share in the pool, in the cross-validated scores, the majority floors and the ensembles' weights "
        "(importance-weighted cross-validation, Sugiyama et al. 2007), so the ranking estimates the score on "
        f"data like yours, not on a sample balanced by construction{was}."
    ]
