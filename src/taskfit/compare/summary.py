"""From cell records to the leaderboard and a plain-language recommendation.

Cells of one (strategy, backbone, K) group differ only by seed, and every group at a K saw the same k-shot
samples per seed, so two groups are compared seed by seed (a paired t-test over seeds) to tell a real
difference from seed noise.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from taskfit.compare.fewshot import cv_lines, cv_runs, pool_scores, scored_on_pools
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
    # cells not run because the race stopped the row after its first seed (compare.racing): never recommended
    stopped: list[dict] = field(default_factory=list)
    metric: Metric = field(default_factory=_default_metric)
    # what ranks the rows: "dev" (each cell's score on data it did not test on: the selection score) when
    # every row recorded one, else "test" (run folders written before taskfit recorded dev scores)
    by: str = "test"
    interval: tuple[float, float] | None = (
        None  # bootstrap CI of the test score (over test examples and seeds)
    )
    # an ensemble row (compare.ensemble): "seeds" or "strategies", the fits it combines, how it was built
    ensemble: str = ""
    fits: int = 0
    note: str = ""
    # the data's label shares its cross-validated scores were re-weighted to (compare.prior), else None
    prior: dict | None = None

    @property
    def name(self) -> str:
        return f"{self.strategy} ({self.backbone})"

    @property
    def ranked_key(self) -> str:
        """The column the rows are ranked by: the metric on dev (selection) or on test."""
        return f"dev_{self.metric.key}" if self.by == "dev" else self.metric.key

    @property
    def by_seed(self) -> dict[int | None, float]:
        return {r["seed"]: self.value(r, self.ranked_key) for r in self.ok}

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
        """Mean of the task's ranking metric on test."""
        return self.mean(self.metric.key)

    @property
    def selection(self) -> float | None:
        """Mean of the ranking metric on dev (None unless every finished cell recorded it)."""
        v = self.values(f"dev_{self.metric.key}")
        return statistics.mean(v) if v and len(v) == len(self.ok) else None

    @property
    def rank(self) -> float:
        """The ranked score (``selection`` or ``score``) as a sort key where larger is better."""
        return self.metric.ranked(self.selection if self.by == "dev" else self.score)

    def floor(self, majority: dict | None) -> float | None:
        """What always answering the majority label scores on the ranked data (None: unknown)."""
        if self.by == "dev":
            v = [
                f
                for r in self.ok
                if (f := ((r.get("metrics") or {}).get("dev_majority") or {}).get(self.metric.key))
                is not None
            ]
            return statistics.mean(v) if v and len(v) == len(self.ok) else None
        return (majority or {}).get(self.metric.key)

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
            "stopped": self.stopped[0]["error"] if self.stopped else None,
            **{
                f"{key}_{stat}": getattr(self, stat)(key)
                for key in (self.metric.key, self.metric.second, *(k for k, _ in self.metric.extra))
                for stat in ("mean", "std")
            },
            "ranked_by": f"{self.metric.key} on {self.by}",
            "selection_mean": self.selection,
            "selection_std": self.std(f"dev_{self.metric.key}") if self.by == "dev" else None,
            "test_interval": list(self.interval) if self.interval else None,
            "trainable_params": first.get("trainable_params"),
            "total_params": first.get("total_params"),
            "fit_seconds_mean": self.mean("fit_seconds"),
            "predict_examples_per_s": self.mean("predict_examples_per_s"),
            "peak_rss_mb": max(self.values("peak_rss_mb"), default=None),
            "saved_mb": self.mean("saved_mb"),
            "chosen": [r["chosen"] for r in self.ok if r.get("chosen")],
            "errors": [f"{r['cell']}: {r['error']}" for r in self.failed],
            **({"ensemble": self.ensemble, "fits": self.fits, "note": self.note} if self.ensemble else {}),
        }


def group_records(records: list[dict], metric: Metric | None = None) -> list[Group]:
    metric = metric or _default_metric()
    groups: dict[tuple, Group] = {}
    for r in records:
        key = (r["strategy"], r["backbone"], r["shots"])
        g = groups.setdefault(
            key, Group(r["strategy"], r["backbone"], r["method"], r["shots"], metric=metric)
        )
        {"ok": g.ok, "stopped": g.stopped}.get(r["status"], g.failed).append(r)
    finished = [g for g in groups.values() if g.ok]
    if finished and all(g.selection is not None for g in finished):  # never mix dev- and test-ranked rows
        for g in groups.values():
            g.by = "dev"
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


def leaderboard(groups: list[Group], majority: dict | None = None, ensembles: list[Group] = ()) -> str:
    """One row per (strategy, backbone, K); then the ensemble rows (``compare.ensemble``; runs: the fits they
    combine); the majority-class baseline last, as the floor to beat."""
    m = groups[0].metric if groups else _default_metric()
    dev = bool(groups) and groups[0].by == "dev"
    extra = [label for _, label in m.extra]
    first = f"{m.label} (ranking metric)" if m.why else m.label  # say so when it is not the task's default
    sel = [f"{'cv' if any(cv_runs(g) for g in groups) else 'dev'} {m.label} (ranks)"] if dev else []
    head = ["strategy", "backbone", "K", *sel, first, m.second_label, *extra, "runs", "trainable params"]
    head += ["fit s", "predict ex/s", "peak MB", "saved MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in [*groups, *ensembles]:
        d = g.as_dict()
        runs = f"{d['runs']}" + (f" ({d['failed']} failed)" if d["failed"] else "")
        runs += f" ({len(g.stopped)} stopped)" if g.stopped else ""
        runs += f" ({g.fits} fits)" if g.ensemble else ""
        scores = [_fmt(d["selection_mean"], d["selection_std"], m)] if dev else []
        scores += [
            _fmt(d[f"{key}_mean"], d[f"{key}_std"], m) for key in (m.key, m.second, *(k for k, _ in m.extra))
        ]
        lines.append(
            f"| {g.strategy} | {g.backbone} | {g.shots} | {' | '.join(scores)} | {runs} | "
            f"{_num(d['trainable_params'], ',')} | {_num(d['fit_seconds_mean'], '.1f')} | "
            f"{_num(d['predict_examples_per_s'], '.1f')} | {_num(d['peak_rss_mb'], ',.0f')} | {_num(d['saved_mb'], '.2f')} |"
        )
    if majority:
        values = [_num(majority.get(key), ".3f") for key in (m.key, m.second)]
        cells = ["—"] * len(sel) + values + ["—"] * len(extra)
        lines.append(
            f"| majority class (always '{majority['label']}') | — | 0 | {' | '.join(cells)} | 0 | — | — | — | — | — |"
        )
    return "\n".join(lines)


def paired_p_value(a: Group, b: Group, n_test: int = 0) -> tuple[float | None, str]:
    """p-value that a and b score the same, paired over seeds (a seed-independent group counts as the same
    value on every seed, or, scored on a cross-validated grid's pools, as its score on each seed's pool). With fewer than two paired seeds there is no estimate of the seed-to-seed variance
    and so no test: (None, why). (A test set's binomial sampling error alone would ignore the variance
    between training samples, which is larger in few-shot runs; ``n_test`` is kept for callers.)"""
    from scipy import stats

    sa, sb = _paired_scores(a, b), _paired_scores(b, a)
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
    return None, "one seed: no estimate of the seed-to-seed variance"


def _paired_scores(g: Group, other: Group) -> dict[int | None, float]:
    """``g``'s ranked score by seed for a paired comparison with ``other``: a row without training data that
    a cross-validated grid scored on every seed's pool gives its score on each of ``other``'s pools (the
    examples ``other`` was scored on), not one score on their union."""
    if g.by == "dev" and g.shots == "0" and other.shots != "0":
        on_pools = pool_scores(g, other.shots, g.metric.key)
        if on_pools and set(other.by_seed) <= set(on_pools):
            return dict(on_pools)
    return g.by_seed


def selection_regret(groups: list[Group]) -> tuple[float, Group, Group] | None:
    """(chosen row's test score minus the best test score, chosen, best on test) among ``groups`` (ranked
    rows, best first), or None when the rows were ranked on test (no regret to measure) or lack test."""
    rows = [g for g in groups if g.ok and g.score is not None]
    if not rows or rows[0].by != "dev":
        return None
    chosen = rows[0]
    best = max(rows, key=lambda g: g.metric.ranked(g.score))
    regret = chosen.score - best.score  # type: ignore[operator]
    return (-regret if chosen.metric.lower_is_better else regret), chosen, best


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


def _describe(g: Group, interval: bool = False) -> str:
    d = g.as_dict()
    runs = f"{d['runs']} seed{'s' if d['runs'] != 1 else ''}" if g.shots != "0" else "no training data"
    m = g.metric
    name = (
        "" if m.proportion and not m.why else f"{m.label} "
    )  # accuracy is implied; say which score otherwise
    test = _fmt(d[f"{m.key}_mean"], d[f"{m.key}_std"], m)
    if interval and g.interval:
        test += f" [95% CI {g.interval[0]:.3f}-{g.interval[1]:.3f}]"
    if g.by == "dev":
        on = (
            "cv" if cv_runs(g)
            else "on the cv pools" if scored_on_pools(g) and g.score is not None
            else "dev" if g.score is not None or g.shots != "0"
            else "on every label"
        )  # fmt: skip
        test = "" if g.score is None else f", test {test}"  # no test split: true few-shot
        return f"**{g.name}** {name}{on} {_fmt(d['selection_mean'], d['selection_std'], m)}{test} ({runs})"
    return f"**{g.name}** {name}{test} ({runs})"


def _comparisons(best: Group, others: list[Group], n_test: int) -> tuple[list[str], list[Group]]:
    """Lines on how the other rows compare with the best, and the rows within noise of it. A claim that a
    row is behind needs an estimate of the seed-to-seed variance: with one seed none is made."""
    if not others:  # one row: nothing to compare it with
        return [], []
    close, beaten, untested, untrained = [], [], [], []
    for g in others:
        p, how = paired_p_value(best, g, n_test)
        if p is None and best.shots == "0" and g.shots == "0":
            untrained.append(g)  # neither learns from a sample: there is no seed-to-seed variance at all
        elif p is None:
            untested.append(g)
        else:
            (close if p >= NOISE_P else beaten).append((g, p, how))
    lines = []
    if close:
        lines.append(
            f"- **Not distinguishable from it** (paired over seeds, p ≥ {NOISE_P}): "
            + "; ".join(f"{_describe(g)}, p = {p:.2f}" for g, p, _ in close)
            + ". These gaps may be seed noise; more seeds would tell."
        )
    if beaten:
        if close or untested or untrained:
            lines.append(
                f"- **Behind it** (paired over seeds, p < {NOISE_P}): "
                + ", ".join(g.name for g, _, _ in beaten)
                + "."
            )
        else:
            lines.append(f"- Every other strategy is clearly behind it (paired over seeds, p < {NOISE_P}).")
    if untrained:
        m = best.metric  # a binomial half-width: for accuracy only (macro-F1 has no such simple one)
        half = (
            f" (on {n_test:,} test examples, {m.label} near {best.score:.2f} is known to about "
            f"±{1.96 * (best.score * (1 - best.score) / n_test) ** 0.5:.3f})"
            if n_test and m.key == "accuracy" and best.score is not None and 0 <= best.score <= 1
            else ""
        )
        lines.append(
            "- Like it, "
            + ", ".join(g.name for g in untrained)
            + (" learns" if len(untrained) == 1 else " learn")
            + " from no labelled sample, so there is no seed-to-seed variance between them: their gap "
            f"is measured once, and only the scoring set's own sampling error applies{half}."
        )
    if untested:
        lines.append(
            "- With one seed there is no estimate of the seed-to-seed variance, so no row can be called clearly "
            "behind the best or within noise of it: the ranking is by the means alone (the test set's sampling "
            "error leaves out the variance between training samples). Run more seeds (`seeds: [0, 1, 2]`) to tell "
            "rows apart."
        )
    return lines, [g for g, _, _ in close]


def _at_reference(
    ok: list[Group], majority: dict | None
) -> tuple[str, list[Group], list[Group], list[Group]]:
    """(the largest K, its rows best first, those at or below the majority-class predictor, the others)."""
    trained_ks = sorted({g.shots for g in ok if g.shots != "0"}, key=shots_order)
    ref = trained_ks[-1] if trained_ks else "0"
    at_ref = sorted((g for g in ok if g.shots in (ref, "0")), key=lambda g: -g.rank)
    m = at_ref[0].metric
    # a row no better than always answering the majority label is never recommended, however high its score
    floor_rows = [g for g in at_ref if (f := g.floor(majority)) is not None and g.rank <= m.ranked(f) + 1e-9]
    # a row the race stopped ran fewer seeds on evidence that it is behind: never recommended
    return ref, at_ref, floor_rows, [g for g in at_ref if g not in floor_rows and not g.stopped]


def recommended_row(groups: list[Group], majority: dict | None) -> Group | None:
    """The row ``recommend`` recommends (None: nothing finished, or nothing beats the majority class)."""
    ok = [g for g in groups if g.ok]
    return _at_reference(ok, majority)[3][0] if ok and _at_reference(ok, majority)[3] else None


def final_members(groups: list[Group], majority: dict | None, most: int) -> list[Group]:
    """The rows ``final/`` averages: the recommended row and, best first, the rows the report calls not
    distinguishable from it (paired over seeds, p ≥ NOISE_P), ``most`` in all; [] when nothing is
    recommended. Stopped rows and rows at the majority floor are never among them."""
    ok = [g for g in groups if g.ok]
    candidates = _at_reference(ok, majority)[3] if ok else []
    if not candidates:
        return []
    close = _comparisons(candidates[0], candidates[1:], 0)[1]
    return [candidates[0], *sorted(close, key=lambda g: -g.rank)][: max(1, most)]


def _majority_line(at_ref: list[Group], majority: dict | None) -> list[str]:
    m = at_ref[0].metric
    if not (majority and majority.get(m.key) is not None and m.key in ("accuracy", "macro_f1")):
        return []
    below = [g.name for g in at_ref if (g.score or 0) <= majority[m.key] + 1e-9]
    text = f"- Majority-class baseline (always '{majority['label']}'): test {m.label} {majority[m.key]:.3f}"
    return [
        text
        + (
            f"; at or below it on test: {', '.join(below)}."
            if below
            else "; every strategy beats it on test."
        )
    ]


def _curve_lines(ok: list[Group], trained_ks: list[str], m, n_test: int) -> list[str]:
    """The report's lines on more than one K: the best row at each K, and what more labels gained per row."""
    lines: list[str] = []
    if len(trained_ks) > 1:
        per_k = []
        for k in trained_ks:
            cands = sorted((g for g in ok if g.shots in (k, "0")), key=lambda g: -g.rank)
            value, scored = (cands[0].score, "test") if n_test else (cands[0].selection, "cross-validated")
            per_k.append(f"K={k}: {cands[0].name} {_num(value, '.3f')}")
        chosen_on = "chosen on dev, " if n_test and cands[0].by == "dev" else ""
        lines.append(f"- **Best at each K** ({chosen_on}{scored} {m.label} shown): " + "; ".join(per_k) + ".")
        # A learning curve reads test: each K draws its own dev sample of 2K texts, so dev scores across K
        # are different yardsticks (on mr dev fell 0.917 -> 0.792 from K=8 to K=32 while test rose).
        gains = []
        for s, b in dict.fromkeys((g.strategy, g.backbone) for g in ok if g.shots != "0"):
            curve = [g for g in ok if (g.strategy, g.backbone) == (s, b)]
            lo, hi = curve[0], curve[-1]
            if len(curve) > 1 and (not n_test or None not in (lo.score, hi.score)):
                gain = m.ranked(hi.score) - m.ranked(lo.score) if n_test else hi.rank - lo.rank
                gains.append((gain, f"{s} ({b})", lo.shots, hi.shots))
        if gains:
            gains.sort(reverse=True)
            lines.append(
                f"- **More labels** ({m.label} on {'test' if n_test else 'the folds'}): "
                + "; ".join(f"{n} {d:+.3f} from K={lo} to K={hi}" for d, n, lo, hi in gains)
                + "."
            )
    return lines


def recommend(
    groups: list[Group], budget: BudgetConfig, majority: dict | None, n_test: int, labels: list[str] = ()
) -> list[str]:
    """Plain-language findings, most important first (Markdown list items)."""
    ok = [g for g in groups if g.ok]
    if not ok:
        return ["- Every cell failed: nothing to recommend (see the failures below)."]
    trained_ks = sorted({g.shots for g in ok if g.shots != "0"}, key=shots_order)
    ref, at_ref, floor_rows, candidates = _at_reference(ok, majority)
    m = at_ref[0].metric
    lines = [f"- Ranked by {m.label}, not accuracy: {m.why}."] if m.why else []
    on = " on dev" if m and at_ref[0].by == "dev" else ""
    if on and any(cv_runs(g) for g in at_ref):
        on = " (cross-validated)"
    if not candidates:
        # no test split: the floor is each fold's (or dev's) own most frequent label, not one label
        always = (
            f"always '{majority['label']}'"
            if (majority or {}).get("label")
            else "always the most frequent label of the examples it is scored on"
        )
        lines.append(
            f"- **Nothing to recommend:** every strategy scores at or below the majority-class predictor "
            f"({always}) on {m.label}{on}: "
            + ", ".join(g.name for g in at_ref)
            + ". More labels, another backbone or a better prompt may help."
        )
        return lines + _majority_line(at_ref, majority)
    best = candidates[0]
    most = "the most labels tried" if m.k_unit == "per class" else "the most tried"
    where = f"at K={ref} {m.k_unit} ({most})" if ref != "0" else "without training data"
    lines.append(f"- **Best by {m.label}{on} {where}:** {_describe(best, interval=True)}.")
    cross = cv_lines(best, at_ref, n_test, list(labels))
    lines += cross
    if best.by == "dev" and not cross:
        lines.append(
            "- Chosen on dev scores (never on test); the test score beside it is an independent check, its interval "
            "a bootstrap over test examples and seeds."
        )
        regret = selection_regret(at_ref)
        if regret is not None:
            value, chosen, top = regret
            lines.append(
                f"- **Selection regret** (chosen row's test {m.label} minus the best test {m.label}): {value:+.3f}"
                + (
                    f" ({top.name} scored {top.score:.3f} on test)."
                    if top is not chosen
                    else " (the chosen row is also the best on test)."
                )
            )
    raced = [g for g in at_ref if g.stopped]
    if raced:
        lines.append(
            "- **Stopped by the race** (run on one seed, never recommended): "
            + "; ".join(f"{g.name}: {g.stopped[0]['error']}" for g in raced)
            + "."
        )
    if floor_rows:
        lines.append(
            f"- Not recommended, at or below the majority-class predictor on {m.label}{on}: "
            + ", ".join(g.name for g in floor_rows)
            + "."
        )
    compare, close = _comparisons(best, candidates[1:], n_test)
    lines += compare
    contenders = [best, *close]
    if any(v is not None for v in budget.model_dump().values()):
        fits = [g for g in candidates if within_budget(g, budget)]
        if fits:
            lines.append(f"- **Best within your budget** ({_budget_text(budget)}): {_describe(fits[0])}.")
        else:
            lines.append(f"- Nothing at K={ref} fits your budget ({_budget_text(budget)}).")
    elif len(candidates) > 1:
        cheapest = min(
            contenders,
            key=lambda g: (
                (g.as_dict()["trainable_params"] or 0) > 0,
                (g.mean("fit_seconds") or 0.0) + 1000 / (g.mean("predict_examples_per_s") or 1e-9),
            ),
        )
        d = cheapest.as_dict()
        rate = d["predict_examples_per_s"]
        speed = (
            f"{rate:.0f} predictions/s" if rate else "prediction speed not measured (no test split to time)"
        )
        lines.append(
            "- **Cheapest within noise of the best** (nothing trained beats training; then time to fit plus "
            f"time to label 1,000 texts): {_describe(cheapest)}: "
            f"{_num(d['trainable_params'], ',')} trainable parameters, fit {_num(d['fit_seconds_mean'], '.1f')} s, "
            f"{speed}. Set `budget:` in the config to choose under your own limits."
        )
    lines += _curve_lines(ok, trained_ks, m, n_test)
    lines += _majority_line(at_ref, majority)
    return lines
