"""From cell records to the leaderboard and a plain-language recommendation.

Cells of one (strategy, backbone, K) group differ only by seed, and every group at a K saw the same k-shot
samples per seed, so two groups are compared seed by seed (a paired t-test over seeds) to tell a real
difference from seed noise.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from taskfit.config import BudgetConfig
from taskfit.evaluation.ranking import Metric, ranked_by, shots_order  # noqa: F401 (re-exported)

NOISE_P = 0.05


def metric_for(task: str, key: str | None = None, types: list[str] | tuple[str, ...] = ()) -> Metric:
    """The task's ranking metric; ``key`` picks another one (e.g. perplexity for open-ended dialogue).
    ``types``: ner's entity types, one F1 column each. (The task object decides: ``Task.metric``.)"""
    from taskfit.tasks import get_task

    return get_task(task).metric(key, types)


def _default_metric() -> Metric:
    return metric_for("classification")


def __getattr__(name: str):
    # METRICS (each task's default ranking metric), built on first use: the task modules import this one
    if name == "METRICS":
        from taskfit.tasks import TASK_NAMES

        return {task: metric_for(task) for task in TASK_NAMES}
    raise AttributeError(name)


@dataclass
class Group:
    strategy: str
    backbone: str
    method: str
    shots: str  # "0" (no training data), "8", ..., "all"
    ok: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    metric: Metric = field(default_factory=_default_metric)

    @property
    def name(self) -> str:
        return f"{self.strategy} ({self.backbone})"

    @property
    def by_seed(self) -> dict[int | None, float]:
        return {r["seed"]: self.value(r, self.metric.key) for r in self.ok}

    @staticmethod
    def value(record: dict, key: str) -> float | None:
        """A record's own column, else the cell's metrics (generation metrics have no column)."""
        if record.get(key) is not None:
            return record[key]
        return (record.get("metrics") or {}).get(key)

    def values(self, key: str) -> list[float]:
        return [v for r in self.ok if (v := self.value(r, key)) is not None]

    @property
    def score(self) -> float | None:
        """Mean of the task's ranking metric."""
        return self.mean(self.metric.key)

    @property
    def rank(self) -> float:
        """``score`` as a sort key where larger is better."""
        return self.metric.ranked(self.score)

    def mean(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.mean(v) if v else None

    def std(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.stdev(v) if len(v) > 1 else None

    def as_dict(self) -> dict:
        first = self.ok[0] if self.ok else {}
        return {
            "strategy": self.strategy,
            "backbone": self.backbone,
            "method": self.method,
            "shots": self.shots,
            "runs": len(self.ok),
            "failed": len(self.failed),
            **{
                f"{key}_{stat}": getattr(self, stat)(key)
                for key in (self.metric.key, self.metric.second, *(k for k, _ in self.metric.extra))
                for stat in ("mean", "std")
            },
            "trainable_params": first.get("trainable_params"),
            "total_params": first.get("total_params"),
            "fit_seconds_mean": self.mean("fit_seconds"),
            "predict_examples_per_s": self.mean("predict_examples_per_s"),
            "peak_rss_mb": max(self.values("peak_rss_mb"), default=None),
            "saved_mb": self.mean("saved_mb"),
            "chosen": [r["chosen"] for r in self.ok if r.get("chosen")],
            "errors": [f"{r['cell']}: {r['error']}" for r in self.failed],
        }


def group_records(records: list[dict], metric: Metric | None = None) -> list[Group]:
    metric = metric or _default_metric()
    groups: dict[tuple, Group] = {}
    for r in records:
        key = (r["strategy"], r["backbone"], r["shots"])
        g = groups.setdefault(
            key, Group(r["strategy"], r["backbone"], r["method"], r["shots"], metric=metric)
        )
        (g.ok if r["status"] == "ok" else g.failed).append(r)
    return sorted(groups.values(), key=lambda g: (shots_order(g.shots), -g.rank))


def fmt_mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _num(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _fmt(mean: float | None, std: float | None, metric: Metric) -> str:
    if metric.proportion or metric.unit_interval:
        return fmt_mean_std(mean, std)
    if mean is None:  # 0-100 scores and perplexities: one decimal is their precision
        return "—"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def leaderboard(groups: list[Group], majority: dict | None = None) -> str:
    """One row per (strategy, backbone, K); the majority-class baseline last, as the floor to beat."""
    m = groups[0].metric if groups else _default_metric()
    extra = [label for _, label in m.extra]
    head = ["strategy", "backbone", "K", m.label, m.second_label, *extra, "runs", "trainable params", "fit s"]
    head += ["predict ex/s", "peak MB", "saved MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        d = g.as_dict()
        runs = f"{d['runs']}" + (f" ({d['failed']} failed)" if d["failed"] else "")
        scores = [
            _fmt(d[f"{key}_mean"], d[f"{key}_std"], m) for key in (m.key, m.second, *(k for k, _ in m.extra))
        ]
        lines.append(
            f"| {g.strategy} | {g.backbone} | {g.shots} | {' | '.join(scores)} | {runs} | "
            f"{_num(d['trainable_params'], ',')} | {_num(d['fit_seconds_mean'], '.1f')} | "
            f"{_num(d['predict_examples_per_s'], '.1f')} | {_num(d['peak_rss_mb'], ',.0f')} | {_num(d['saved_mb'], '.2f')} |"
        )
    if majority:
        lines.append(
            f"| majority class (always '{majority['label']}') | — | 0 | {majority['accuracy']:.3f} | — | — | 0 | — | — | — | — |"
        )
    return "\n".join(lines)


def paired_p_value(a: Group, b: Group, n_test: int) -> tuple[float | None, str]:
    """p-value that a and b have equal accuracy: paired over seeds when both were seen on several seeds
    (a seed-independent group counts as the same value on every seed), else a test-set sampling bound."""
    from scipy import stats

    sa, sb = a.by_seed, b.by_seed
    if None in sa and None in sb:
        diffs: list[float] = []
    elif None in sa:
        diffs = [sa[None] - v for v in sb.values()]
    elif None in sb:
        diffs = [v - sb[None] for v in sa.values()]
    else:
        diffs = [sa[s] - sb[s] for s in sa if s in sb]
    if len(diffs) >= 2:
        if statistics.pstdev(diffs) < 1e-12:
            return (1.0 if abs(diffs[0]) < 1e-12 else 0.0), "paired over seeds"
        return float(stats.ttest_1samp(diffs, 0.0).pvalue), "paired over seeds"
    if not a.metric.proportion:  # a corpus score has no closed-form sampling error: no test
        return None, "one seed, no significance test for this score"
    # one seed: only the test set's sampling error is known
    pa, pb = a.score or 0.0, b.score or 0.0
    se = math.sqrt(max(pa * (1 - pa) + pb * (1 - pb), 1e-12) / max(n_test, 1))
    return float(2 * stats.norm.sf(abs(pa - pb) / se)), "test-set sampling error (one seed)"


def within_budget(g: Group, budget: BudgetConfig) -> bool:
    d = g.as_dict()
    checks = [
        (budget.fit_seconds, d["fit_seconds_mean"], "max"),
        (budget.trainable_params, d["trainable_params"], "max"),
        (budget.peak_memory_mb, d["peak_rss_mb"], "max"),
        (budget.saved_mb, d["saved_mb"], "max"),
        (budget.predict_examples_per_s, d["predict_examples_per_s"], "min"),
    ]
    for limit, value, kind in checks:
        if limit is None:
            continue
        if value is None or (value > limit if kind == "max" else value < limit):
            return False
    return True


def _budget_text(budget: BudgetConfig) -> str:
    parts = [
        f"fit ≤ {budget.fit_seconds:g} s" if budget.fit_seconds else "",
        f"trainable params ≤ {budget.trainable_params:,}" if budget.trainable_params is not None else "",
        f"peak memory ≤ {budget.peak_memory_mb:g} MB" if budget.peak_memory_mb else "",
        f"saved ≤ {budget.saved_mb:g} MB" if budget.saved_mb else "",
        f"predict ≥ {budget.predict_examples_per_s:g} ex/s" if budget.predict_examples_per_s else "",
    ]
    return ", ".join(p for p in parts if p)


def _describe(g: Group) -> str:
    d = g.as_dict()
    runs = f"{d['runs']} seed{'s' if d['runs'] != 1 else ''}" if g.shots != "0" else "no training data"
    m = g.metric
    name = "" if m.proportion else f"{m.label} "  # accuracy is implied; say which score otherwise
    return f"**{g.name}** {name}{_fmt(d[f'{m.key}_mean'], d[f'{m.key}_std'], m)} ({runs})"


def recommend(groups: list[Group], budget: BudgetConfig, majority: dict | None, n_test: int) -> list[str]:
    """Plain-language findings, most important first (Markdown list items)."""
    ok = [g for g in groups if g.ok]
    if not ok:
        return ["- Every cell failed: nothing to recommend (see the failures below)."]
    trained_ks = sorted({g.shots for g in ok if g.shots != "0"}, key=shots_order)
    ref = trained_ks[-1] if trained_ks else "0"
    at_ref = [g for g in ok if g.shots in (ref, "0")]
    at_ref.sort(key=lambda g: -g.rank)
    best = at_ref[0]
    most = "the most labels tried" if best.metric.k_unit == "per class" else "the most tried"
    where = f"at K={ref} {best.metric.k_unit} ({most})" if ref != "0" else "without training data"
    lines = [f"- **Best by {best.metric.label} {where}:** {_describe(best)}."]
    close, beaten, untested = [], [], []
    for g in at_ref[1:]:
        p, how = paired_p_value(best, g, n_test)
        if p is None:  # no test possible: never counted as "within noise" of the best
            untested.append(g)
        else:
            (close if p >= NOISE_P else beaten).append((g, p, how))
    if close:
        how = close[0][2]
        why = (
            ". These gaps may be seed noise; more seeds would tell."
            if how.startswith("paired")
            else ". These gaps are within the test set's sampling error; more seeds and test examples would tell."
        )
        lines.append(
            f"- **Not distinguishable from it** ({how}, p ≥ {NOISE_P}): "
            + "; ".join(f"{_describe(g)}, p = {p:.2f}" for g, p, _ in close)
            + why
        )
    elif untested:
        lines.append(
            f"- With one seed there is no significance test for {best.metric.label} (a corpus score); "
            "the ranking is by the means alone: run more seeds to tell close rows apart."
        )
    else:
        lines.append(f"- Every other strategy is clearly behind it (p < {NOISE_P}).")
    contenders = [best] + [g for g, _, _ in close]
    if any(v is not None for v in budget.model_dump().values()):
        fits = [g for g in at_ref if within_budget(g, budget)]
        if fits:
            lines.append(f"- **Best within your budget** ({_budget_text(budget)}): {_describe(fits[0])}.")
        else:
            lines.append(f"- Nothing at K={ref} fits your budget ({_budget_text(budget)}).")
    else:
        cheapest = min(
            contenders,
            key=lambda g: (
                (g.as_dict()["trainable_params"] or 0) > 0,
                (g.mean("fit_seconds") or 0.0) + 1000 / (g.mean("predict_examples_per_s") or 1e-9),
            ),
        )
        d = cheapest.as_dict()
        lines.append(
            "- **Cheapest within noise of the best** (nothing trained beats training; then time to fit plus "
            f"time to label 1,000 texts): {_describe(cheapest)}: "
            f"{_num(d['trainable_params'], ',')} trainable parameters, fit {_num(d['fit_seconds_mean'], '.1f')} s, "
            f"{_num(d['predict_examples_per_s'], '.0f')} predictions/s. Set `budget:` in the config to choose under "
            "your own limits."
        )
    if len(trained_ks) > 1:
        per_k = []
        for k in trained_ks:
            cands = sorted((g for g in ok if g.shots in (k, "0")), key=lambda g: -g.rank)
            per_k.append(f"K={k}: {cands[0].name} {cands[0].score:.3f}")
        lines.append("- **Best at each K:** " + "; ".join(per_k) + ".")
        gains = []
        for s, b in dict.fromkeys((g.strategy, g.backbone) for g in ok if g.shots != "0"):
            curve = [g for g in ok if (g.strategy, g.backbone) == (s, b)]
            if len(curve) > 1:
                lo, hi = curve[0], curve[-1]
                gains.append((hi.rank - lo.rank, f"{s} ({b})", lo.shots, hi.shots))
        if gains:
            gains.sort(reverse=True)
            lines.append(
                "- **More labels:** "
                + "; ".join(f"{n} {d:+.3f} from K={lo} to K={hi}" for d, n, lo, hi in gains)
                + "."
            )
    if majority and best.metric.key == "accuracy":
        below = [g.name for g in at_ref if (g.score or 0) <= majority["accuracy"] + 1e-9]
        text = f"- Majority-class baseline (always '{majority['label']}'): {majority['accuracy']:.3f}"
        lines.append(
            text + (f"; at or below it: {', '.join(below)}." if below else "; every strategy beats it.")
        )
    return lines
