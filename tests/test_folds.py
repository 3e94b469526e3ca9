"""Fold construction for cross-validated selection."""

import pytest

from taskfit.data.folds import stratified_folds
from tests.conftest import write_csv


def test_folds_are_stratified_seeded_disjoint_and_cover_the_pool():
    labels = ["a"] * 12 + ["b"] * 7 + ["c"] * 5
    folds = stratified_folds(labels, 5, seed=0)
    flat = [i for f in folds for i in f]
    assert sorted(flat) == list(range(len(labels)))  # disjoint and covering
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for f in folds:  # every label in every fold (each has at least 5 examples)
        assert {labels[i] for i in f} == {"a", "b", "c"}
        assert abs(sum(labels[i] == "a" for i in f) - 12 / 5) < 1.5  # stratified
    assert stratified_folds(labels, 5, seed=0) == folds
    assert stratified_folds(labels, 5, seed=1) != folds


def test_a_rare_label_is_in_as_many_folds_as_it_can_be():
    labels = ["a"] * 10 + ["b"] * 2
    folds = stratified_folds(labels, 4, seed=3)
    assert sum(any(labels[i] == "b" for i in f) for f in folds) == 2
    with pytest.raises(ValueError, match="at least 2 folds"):
        stratified_folds(labels, 1, seed=0)


def test_the_selection_rules_on_hand_built_fold_scores():
    from taskfit.compare.cv import choose_epochs, choose_non_default

    # epochs: the best mean fold curve, the earliest on a tie, never 0 (the untrained model)
    assert choose_epochs([{1: 0.5, 2: 0.7, 3: 0.7}, {1: 0.6, 2: 0.8, 3: 0.8}]) == 2
    assert choose_epochs([{0: 0.9, 1: 0.5}]) == 1 and choose_epochs([]) is None
    default = [{"dev_accuracy": v} for v in (0.70, 0.72, 0.68, 0.70)]
    steady = [{"dev_accuracy": v + 0.05} for v in (0.70, 0.72, 0.68, 0.70)]  # +0.05 on every fold
    noisy = [{"dev_accuracy": v} for v in (0.90, 0.60, 0.80, 0.55)]  # higher on average, but by chance
    assert choose_non_default(default, steady, "dev_accuracy")["chosen"] is True
    rule = choose_non_default(default, noisy, "dev_accuracy")
    assert rule["chosen"] is False and rule["gain"] > 0 and rule["noise"] > rule["gain"]


def test_cv_selection_fits_the_folds_then_all_of_train_plus_dev(
    sentiment_csv, tiny_bert_dir, tmp_path, monkeypatch
):
    import json

    from taskfit.compare import run_experiment
    from taskfit.config import validate_config
    from taskfit.strategies.head_finetune import HeadFinetune

    seen = []
    original = HeadFinetune.fit

    def counting_fit(self, train, dev):
        seen.append(
            (len(train), len(dev), self.config.epochs, {e.text for e in train}, {e.text for e in dev})
        )
        return original(self, train, dev)

    monkeypatch.setattr(HeadFinetune, "fit", counting_fit)
    import csv

    with sentiment_csv.open(encoding="utf-8") as f:  # a dev file: a small file without one holds nothing out
        dev = write_csv(tmp_path / "dev.csv", [{**r, "text": r["text"] + " dev"} for r in csv.DictReader(f)])
    raw = {
        "name": "cv",
        "data": {
            "train": str(sentiment_csv),
            "dev": str(dev),
            "shots": 4,
            "dev_shots": 2,
            "selection": "cv",
            "folds": 3,
        },
        "seeds": [0],
        "workers": 1,
        "final": "none",
        "strategies": [{"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 3}],
    }
    run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    *folds, last = seen
    # the folds in lockstep, each on the other folds' labels with nothing held out to restore a best epoch
    # from (it scores its held-out fold after every epoch instead); no refits (issue 38)
    assert len(folds) == 3 and all(n_dev == 0 for _, n_dev, *_ in folds)
    pool = last[3]
    assert last[:2] == (12, 0) and len(pool) == 12  # 4 + 2 per class, 2 classes, nothing held out
    held = [pool - train for _, _, _, train, _ in folds]
    assert all(n_train + len(h) == 12 for (n_train, *_), h in zip(folds, held))
    assert sorted(t for h in held for t in h) == sorted(pool)  # every example held out exactly once
    metrics = json.loads(
        (tmp_path / "out" / "head-finetune" / "tiny-bert0" / "k4" / "seed-0" / "metrics.json").read_text()
    )
    assert metrics["cv"]["folds"] == 3 and metrics["cv"]["epochs"] <= 3 and "dev_accuracy" in metrics
    # one out-of-fold prediction per labelled example (the ensemble's weights use each label once)
    assert len(metrics["oof"]) == 12 and all(
        set(r["probs"]) == {"negative", "positive"} for r in metrics["oof"]
    )


def _cv_on(
    fake, config, n: int = 20, n_train: int = 12, folds: int = 4, choose_by: str = "accuracy", prior=None
):
    """cv_fit with ``folds`` folds over ``n`` alternating a/b examples (``n_train`` train, the rest dev),
    building ``fake(config)`` strategies; (every strategy built, in order; the final one; its metrics)."""
    from taskfit.compare.cv import cv_fit
    from taskfit.data.readers import Example
    from taskfit.strategies import Context
    from taskfit.tasks import get_task

    built = []

    def build(cfg, ctx):
        built.append(fake(cfg))
        return built[-1]

    pool = [Example(f"t{i}", "a" if i % 2 else "b") for i in range(n)]
    ctx = Context(labels=["a", "b"], seed=0, choose_by=choose_by, prior=prior)
    train, dev = pool[:n_train], pool[n_train:]
    strategy, metrics = cv_fit(config, ctx, train, dev, folds, get_task("classification"), build)
    return built, strategy, metrics


def test_cv_takes_contextual_calibration_only_when_it_wins_beyond_the_fold_noise():
    from dataclasses import dataclass, field

    from taskfit.config.base import StrategyBase
    from taskfit.strategies.base import Predictions

    class Cfg(StrategyBase):  # in-context's setting that CV chooses, declared as InContextConfig does
        calibration: str = "auto"

        def calibration_setting(self) -> str:
            return self.calibration

        def demonstrations_per_class(self) -> int:
            return 2

    @dataclass
    class Fake:  # contextual is right on every example; none on half of them
        config: Cfg
        log: list = field(default_factory=list)
        fits: list = field(default_factory=list)

        def fit(self, train, dev):
            self.fits.append((len(train), len(dev)))

        def predict(self, examples):
            import torch

            right = self.config.calibration == "contextual"
            labels = [
                e.label if right or i % 2 else ("b" if e.label == "a" else "a")
                for i, e in enumerate(examples)
            ]
            return Predictions(labels, torch.zeros(len(examples), 2), ["a", "b"])

    built, strategy, metrics = _cv_on(Fake, Cfg())
    assert len(built) == 4 + 4 + 1 and strategy.config.calibration == "contextual"
    assert strategy.fits == [(20, 0)] and metrics["cv"]["calibration"]["chosen"] == "contextual"
    assert metrics["dev_accuracy"] == 1.0
    # on a grid ranked by macro-F1 the folds' macro-F1 decides (the gain is in macro-F1, not accuracy)
    _, _, metrics = _cv_on(Fake, Cfg(), choose_by="macro_f1")
    rule = metrics["cv"]["calibration"]
    assert rule["by"] == "macro_f1" and rule["chosen"] == "contextual"
    none_f1 = [s["dev_macro_f1"] for s in metrics["cv"]["fold_scores"]]  # contextual's: all 1.0
    assert none_f1 == [1.0] * 4 and rule["gain"] != 0.5  # accuracy's gain would be 0.5


def test_ensemble_weights_use_each_labelled_example_once():
    from taskfit.compare.ensemble import ensemble_weights
    from taskfit.data.folds import stratified_folds

    labels = ["a", "b"]
    gold = ["a", "b"] * 10
    folds = stratified_folds(gold, 5, seed=0)
    held_by = {i: f for f, members in enumerate(folds) for i in members}
    assert len(held_by) == len(gold)  # one fold holds each example out: one out-of-fold prediction each

    def rows(right_on):  # a row right on the examples ``right_on`` picks
        return [
            {
                "gold": g,
                "probs": {g: 0.9, ("b" if g == "a" else "a"): 0.1}
                if right_on(i)
                else {g: 0.2, ("b" if g == "a" else "a"): 0.8},
            }
            for i, g in enumerate(gold)
        ]

    oof = {"good": rows(lambda i: i % 5 != 0), "bad": rows(lambda i: i % 2 == 0)}
    weights = ensemble_weights(oof, labels)
    assert abs(sum(weights.values()) - 1) < 1e-9 and weights["good"] > weights["bad"]
    import pytest

    with pytest.raises(ValueError, match="same labelled examples"):
        ensemble_weights({"x": oof["good"], "y": oof["good"][::-1]}, labels)


def _prefix_fake(fixes: tuple, breaks: tuple = (), per_class: int = 1):
    """An in-context-like strategy: its model is its demonstrations (the first ``per_class`` examples of each
    label it is fitted on). Without calibration it always answers a; with contextual calibration it answers
    right on the examples whose index ends in a digit of ``fixes`` and wrong on those ending in ``breaks``."""
    from dataclasses import dataclass, field

    import torch

    from taskfit.config.base import StrategyBase
    from taskfit.strategies.base import Predictions

    class Cfg(StrategyBase):  # one shared prefix, declared as InContextConfig does
        calibration: str = "auto"
        demos_per_class: int = per_class
        selection: str = "balanced"
        prompt_search: None = None
        demo_sets: int | None = None

        def calibration_setting(self) -> str:
            return self.calibration

        def holds_one_prefix(self) -> bool:
            return self.selection != "similar" and self.prompt_search is None

        def demonstrations_per_class(self) -> int:
            return self.demos_per_class

    @dataclass
    class Fake:
        config: Cfg
        log: list = field(default_factory=list)
        fits: list = field(default_factory=list)
        pool: list = field(default_factory=list)
        calibration: str = "none"
        predicted: list = field(default_factory=list)
        sets: list = field(default_factory=list)  # demo_sets: a second set of demonstrations

        def fit(self, train, dev):
            self.fits.append((len(train), len(dev), self.config.calibration))
            self.pool = [e for lab in ("a", "b") for e in [x for x in train if x.label == lab][:per_class]]
            if getattr(self.config, "demo_sets", None):
                second = [e for lab in ("a", "b") for e in [x for x in train if x.label == lab][-per_class:]]
                self.sets = [self.pool, second]

        @property
        def demonstrations(self):
            return [e for s in self.sets for e in s] if self.sets else self.pool

        def predict(self, examples):
            self.predicted.append([e.text for e in examples])

            def answer(e):
                digit = int(e.text[1:]) % 10
                if self.calibration != "contextual" or digit not in fixes + breaks:
                    return "a"
                return e.label if digit in fixes else ("b" if e.label == "a" else "a")

            labels = [answer(e) for e in examples]
            probs = torch.tensor([[0.7, 0.3] if lab == "a" else [0.3, 0.7] for lab in labels])
            return Predictions(labels, probs, ["a", "b"])

    return Fake, Cfg


def test_in_context_is_fitted_once_and_chosen_on_the_examples_its_prefix_never_saw():
    fake, cfg = _prefix_fake(fixes=tuple(range(10)))  # contextual right everywhere, none on the a's only
    built, strategy, metrics = _cv_on(fake, cfg(), n=40, n_train=24, folds=3)
    assert len(built) == 1 and strategy.fits == [(40, 0, "none")]  # one fit on the whole pool, no folds
    assert strategy.config.calibration == "auto" and strategy.calibration == "contextual"
    demos = {e.text for e in strategy.pool}
    assert len(demos) == 2
    for texts in strategy.predicted:  # scored on the 38 others, never on its own demonstrations
        assert len(texts) == 38 and not demos & set(texts)
    cv = metrics["cv"]
    assert cv["calibration"]["chosen"] == "contextual" and cv["held_out"] == 38 and cv["folds"] == 3
    assert metrics["dev_accuracy"] == 1.0 and sum(len(texts) for texts in strategy.predicted) == 2 * 38
    assert [r["probs"] is None for r in metrics["oof"]] == [r in demos for r in (f"t{i}" for i in range(40))]
    assert sum(s["dev_examples_scored"] for s in cv["fold_scores"]) == 38
    # the calibration not chosen, scored on the same 38, kept for the grid's decision over the seeds
    other = metrics["alternative"]
    assert cv["calibration"]["applied"] == "contextual" and other["cv"]["calibration"]["applied"] == "none"
    assert other["cv"]["calibration"]["gain"] == cv["calibration"]["gain"]  # one verdict, two readings
    assert other["dev_accuracy"] == 0.5 and other["cv"]["held_out"] == 38  # none: always a, 19 of 38
    assert sum(r["probs"] is not None and r["probs"]["a"] > 0.5 for r in other["oof"]) == 38
    assert strategy.scored is not None  # test is then predicted under both from one pass of the LM


def test_in_context_with_demonstration_sets_is_scored_on_the_examples_no_set_shows():
    fake, cfg = _prefix_fake(fixes=tuple(range(10)))
    _, strategy, metrics = _cv_on(fake, cfg(demo_sets=2), n=40, n_train=24, folds=3)
    shown = {e.text for e in strategy.demonstrations}
    assert len(shown) == 4 and {e.text for e in strategy.pool} < shown
    for texts in strategy.predicted:  # scored on the 36 others, never on any set's demonstrations
        assert len(texts) == 36 and not shown & set(texts)
    assert metrics["cv"]["held_out"] == 36
    assert [r["probs"] is None for r in metrics["oof"]] == [r in shown for r in (f"t{i}" for i in range(40))]


def test_in_context_with_more_demonstrations_keeps_no_calibration_unless_contextual_clearly_wins():
    # two per class: none is the default. Contextual fixes 14 b's and breaks 10 a's of the 36 held out:
    # +0.111 on average, one standard error 0.137: kept none
    fake, cfg = _prefix_fake(fixes=(0, 2, 4, 6), breaks=(1, 3, 5), per_class=2)
    _, strategy, metrics = _cv_on(fake, cfg(demos_per_class=2), n=40, n_train=24, folds=3)
    rule = metrics["cv"]["calibration"]
    assert rule["default"] == "none" and metrics["cv"]["held_out"] == 36
    assert abs(rule["gain"] - 4 / 36) < 1e-9 and rule["noise"] > rule["gain"] and rule["chosen"] == "none"
    assert strategy.calibration == "none" and metrics["dev_accuracy"] == 0.5  # always a: 18 of 36
    # four b's fixed and nothing broken clears its standard error: taken
    fake, cfg = _prefix_fake(fixes=(2,), per_class=2)
    _, strategy, metrics = _cv_on(fake, cfg(demos_per_class=2), n=40, n_train=24, folds=3)
    assert metrics["cv"]["calibration"]["chosen"] == "contextual" and strategy.calibration == "contextual"


def test_in_context_with_one_demonstration_per_class_keeps_contextual_unless_none_clearly_wins():
    from taskfit.compare.cv import calibration_default

    assert calibration_default(2, 2) == "contextual" and calibration_default(4, 2) == "none"
    # none is better by 4 of 38 (contextual fixes 7 b's, breaks 11 a's): within one standard error (0.112)
    fake, cfg = _prefix_fake(fixes=(0, 2), breaks=(1, 3, 5))
    _, strategy, metrics = _cv_on(fake, cfg(), n=40, n_train=24, folds=3)
    rule = metrics["cv"]["calibration"]
    assert (
        rule["default"] == "contextual" and abs(rule["gain"] - 4 / 38) < 1e-9 and rule["noise"] > rule["gain"]
    )
    assert rule["chosen"] == "contextual" and strategy.calibration == "contextual"
    # contextual wrong on every a and no b fixed: none clearly wins
    fake, cfg = _prefix_fake(fixes=(), breaks=(1, 3, 5, 7, 9))
    _, strategy, metrics = _cv_on(fake, cfg(), n=40, n_train=24, folds=3)
    assert metrics["cv"]["calibration"]["chosen"] == "none" and metrics["dev_accuracy"] == 0.5


def test_in_context_chooses_its_calibration_at_the_data_label_shares_not_the_pool_s():
    """The pool is balanced (K per class); the data is 80% b. Contextual fixes 14 b's and breaks 10 a's of
    the 36 held out: +0.111 on the pool, within its noise, so none is kept; at the data's shares each b
    counts 1.6 and each a 0.4, the gain is about +0.5 and clears it. Without a prior: as before."""
    from taskfit.compare.cv import choose_on_resamples

    fake, cfg = _prefix_fake(fixes=(0, 2, 4, 6), breaks=(1, 3, 5), per_class=2)
    _, strategy, metrics = _cv_on(fake, cfg(demos_per_class=2), n=40, n_train=24, folds=3)
    assert metrics["cv"]["calibration"]["chosen"] == "none"
    assert metrics["cv"]["calibration"]["weighted"] is False
    prior = {"a": 0.2, "b": 0.8}
    _, strategy, metrics = _cv_on(fake, cfg(demos_per_class=2), n=40, n_train=24, folds=3, prior=prior)
    rule = metrics["cv"]["calibration"]
    assert rule["weighted"] is True and rule["by"] == "accuracy"
    assert abs(rule["gain"] - (14 * 1.6 - 10 * 0.4) / 36) < 1e-9 and rule["gain"] > rule["noise"]
    assert rule["chosen"] == "contextual" and strategy.calibration == "contextual"
    # the bootstrap's weighted accuracy is the weighted mean of the per-example differences
    gold, default, other = ["a", "b", "b", "b"], ["a", "a", "a", "a"], ["b", "b", "b", "b"]
    plain = choose_on_resamples(gold, default, other, ["a", "b"], "accuracy")
    weighted = choose_on_resamples(gold, default, other, ["a", "b"], "accuracy", weight=[3.0, 1.0, 1.0, 1.0])
    assert plain["gain"] == 0.5 and weighted["gain"] == 0.0


def test_a_weighted_ensemble_is_kept_only_when_its_cross_validated_gain_beats_the_noise():
    from taskfit.compare.ensemble import checked_weights

    labels = ["a", "b"]
    gold = ["a", "b"] * 15

    def member(wrong):  # P(gold) 0.9 where right, 0.4 where wrong: any two together are right everywhere
        return [
            {
                "gold": g,
                "probs": {g: 0.4 if wrong(i) else 0.9, ("b" if g == "a" else "a"): 0.6 if wrong(i) else 0.1},
            }
            for i, g in enumerate(gold)
        ]

    thirds = {
        "x": member(lambda i: i % 3 == 0),
        "y": member(lambda i: i % 3 == 1),
        "z": member(lambda i: i % 3 == 2),
    }
    weights, verdict = checked_weights(thirds, labels, "x")
    assert verdict["chosen"] is True and verdict["gain"] > 0.25 and verdict["parts"] == 5
    assert weights["x"] < 1 and abs(sum(weights.values()) - 1) < 1e-9
    # a second member no better than the best one: the row is the best member alone
    same = {"x": member(lambda i: i % 5 == 0), "y": member(lambda i: i % 5 == 0)}
    weights, verdict = checked_weights(same, labels, "x")
    assert verdict["chosen"] is False and weights == {"x": 1.0, "y": 0.0}


def test_on_imbalanced_labels_the_calibration_is_chosen_on_macro_f1_not_accuracy():
    """Always answering the majority label wins on accuracy beyond its standard error and loses on macro-F1:
    the rule follows the metric the grid ranks by."""
    from taskfit.compare.cv import choose_non_default, choose_on_resamples

    gold = ["a"] * 60 + ["b"] * 10
    default = ["b"] * 20 + ["a"] * 40 + ["b"] * 10  # every b found, 20 a's mistaken for b: accuracy 0.714
    majority = ["a"] * 70  # accuracy 0.857, macro-F1 0.462 (against 0.65)

    def correct(preds):
        return [{"acc": float(p == g)} for p, g in zip(preds, gold)]

    on_accuracy = choose_non_default(correct(default), correct(majority), "acc")
    assert on_accuracy["chosen"] and abs(on_accuracy["gain"] - 10 / 70) < 1e-9
    on_f1 = choose_on_resamples(gold, default, majority, ["a", "b"], "macro_f1")
    assert on_f1["chosen"] is False and abs(on_f1["gain"] - (12 / 26 - 0.65)) < 1e-9
    # for accuracy the paired bootstrap's standard error is about the per-example one (0.076)
    boot = choose_on_resamples(gold, default, majority, ["a", "b"], "accuracy")
    assert abs(boot["gain"] - on_accuracy["gain"]) < 1e-9 and abs(boot["noise"] - on_accuracy["noise"]) < 0.01
    # in the held-out choice of in-context: the rule records what it chose on
    fake, cfg = _prefix_fake(fixes=tuple(range(10)))
    _, strategy, metrics = _cv_on(fake, cfg(), n=40, n_train=24, folds=3, choose_by="macro_f1")
    rule = metrics["cv"]["calibration"]
    assert rule["by"] == "macro_f1" and rule["chosen"] == "contextual"
    assert abs(rule["gain"] - (19 / 57 - 1.0)) < 1e-9  # none (always a) against contextual (all right)


def test_with_the_correction_off_only_in_context_cells_choosing_on_the_pool_record_the_ranking_metric(
    sentiment_csv, tiny_bert_dir
):
    from taskfit.compare.plan import data_fingerprint, plan_cells
    from taskfit.config import validate_config
    from taskfit.tasks import load_pools

    bb = str(tiny_bert_dir)
    raw = {**_KEYS_GRID(sentiment_csv, bb), "correction": False}  # every label cell corrects otherwise
    cfg = validate_config(raw)
    fingerprint = data_fingerprint(load_pools(cfg.data))
    on_accuracy = plan_cells(cfg, fingerprint)
    on_f1 = plan_cells(cfg, fingerprint, "macro_f1")
    changed = [c.path for c, d in zip(on_accuracy, on_f1) if c.key != d.key]
    assert changed == ["in-context/tiny-bert0/k2/seed-0"]  # auto calibration only; the others keep their keys
    assert [c.choose_by for c in on_f1] == [None, None, "macro_f1", None]
    from taskfit.compare.cell import CellSpec

    specs = [CellSpec.build(c, cfg, threads=1).as_json() for c in on_f1]  # what the worker reads
    assert [s.get("choose_by") for s in specs] == [None, None, "macro_f1", None]
    assert CellSpec.model_validate(specs[2]).choose_by == "macro_f1"
    dev = validate_config({**raw, "data": {**raw["data"], "selection": "dev"}})
    assert all(c.choose_by is None for c in plan_cells(dev, fingerprint, "macro_f1"))
    # the data's label shares: recorded by the one cell that weights its choice by them, when unbalanced
    skewed = plan_cells(cfg, fingerprint, "accuracy", {"negative": 0.7, "positive": 0.3})
    assert [c.key != d.key for c, d in zip(on_accuracy, skewed)] == [False, False, True, False]
    assert skewed[2].prior == (("negative", 0.7), ("positive", 0.3))
    spec = CellSpec.build(skewed[2], cfg, threads=1).as_json()
    assert CellSpec.model_validate(spec).prior == {"negative": 0.7, "positive": 0.3}
    assert "prior" not in CellSpec.build(skewed[1], cfg, threads=1).as_json()  # cell.json as it was
    near = plan_cells(cfg, fingerprint, "accuracy", {"negative": 0.51, "positive": 0.49})
    assert [c.key for c in near] == [c.key for c in on_accuracy]  # balanced within 0.02: nothing to weight
    every = validate_config({**raw, "data": {**raw["data"], "shots": "all"}})
    unweighted = plan_cells(every, fingerprint, "accuracy")
    weighted = plan_cells(every, fingerprint, "accuracy", {"negative": 0.7, "positive": 0.3})
    assert [c.key for c in weighted] == [c.key for c in unweighted]  # shots: all pools have the data's shares


def _KEYS_GRID(csv, bb: str) -> dict:  # noqa: N802 (a constant-like builder)
    return {
        "name": "keys",
        "data": {"train": str(csv), "shots": [2], "selection": "cv", "folds": 2},
        "seeds": [0],
        "prompt": {
            "template": "{text} It was [MASK].",
            "verbalizer": {"positive": "good", "negative": "bad"},
        },
        "strategies": [
            {"name": "zero-shot", "backbone": bb},
            {"name": "head-finetune", "backbone": bb, "epochs": 1},
            {"name": "in-context", "backbone": bb, "demos_per_class": 1},
            {"name": "in-context", "backbone": bb, "demos_per_class": 1, "calibration": "none"},
        ],
    }


def test_every_label_cell_chooses_its_correction_on_the_ranking_metric_at_the_data_shares(
    sentiment_csv, tiny_bert_dir
):
    """Issue 36: the decision correction is chosen on held-out predictions by every label cell, so each
    records the grid's ranking metric and, on a K-shot grid of unbalanced data, the data's label shares."""
    from taskfit.compare.plan import data_fingerprint, plan_cells
    from taskfit.config import validate_config
    from taskfit.tasks import load_pools

    cfg = validate_config(_KEYS_GRID(sentiment_csv, str(tiny_bert_dir)))
    fingerprint = data_fingerprint(load_pools(cfg.data))
    on_accuracy = plan_cells(cfg, fingerprint)
    on_f1 = plan_cells(cfg, fingerprint, "macro_f1")
    assert [c.choose_by for c in on_accuracy] == [None] * 4
    assert [c.choose_by for c in on_f1] == ["macro_f1"] * 4
    assert all(c.key != d.key for c, d in zip(on_accuracy, on_f1))
    skewed = plan_cells(cfg, fingerprint, "accuracy", {"negative": 0.7, "positive": 0.3})
    assert all(c.prior == (("negative", 0.7), ("positive", 0.3)) for c in skewed)


def _calibration_records(tmp_path, gains: list[float], noises: list[float], name: str = "in-context"):
    """One in-context row's cells as the grid reads them: each seed's held-out verdict (``gain`` of none over
    contextual, ``noise``) and its own choice; ``alternative/`` holds the reading with the other calibration
    (scores 0.54 macro-F1 against the seed's own 0.47, so a switch shows)."""
    import json

    records = []
    for seed, (gain, noise) in enumerate(zip(gains, noises)):
        own = "none" if gain > noise else "contextual"
        verdict = {"chosen": own, "gain": gain, "noise": noise, "default": "contextual", "by": "macro_f1"}
        cell = f"{name}/smollm2/k16/seed-{seed}"
        metrics = {"accuracy": 0.5, "macro_f1": 0.47, "cv": {"calibration": {**verdict, "applied": own}}}
        records.append(
            {
                "cell": cell,
                "key": f"k{seed}",
                "strategy": name,
                "backbone": "smollm2",
                "shots": "16",
                "seed": seed,
                "status": "ok",
                "accuracy": 0.5,
                "macro_f1": 0.47,
                "metrics": metrics,
            }
        )
        other = "contextual" if own == "none" else "none"
        alt = {"key": f"k{seed}", "accuracy": 0.56, "macro_f1": 0.54}
        alt["cv"] = {"calibration": {**verdict, "applied": other}}
        (tmp_path / cell / "alternative").mkdir(parents=True)
        (tmp_path / cell / "alternative" / "metrics.json").write_text(json.dumps(alt))
    return records


def test_the_row_decides_the_calibration_over_its_seeds_and_a_seed_keeps_its_own_only_on_clear_evidence(
    tmp_path,
):
    """trec, K=16 (issue 18). With 4 demonstration sets the five seeds' gains of none over contextual are
    +0.05, +0.11, +0.05, -0.002, +0.04: seed 3 alone kept contextual, on a tie; over the seeds none clears its
    standard error, so seed 3 is read with none, from the alternative its cell saved, and the final model
    is refitted with none. With one prefix the gains average -0.03 (contextual stays the row's), and seed 4,
    whose own gain from none is three times its noise, keeps none: forced to contextual it had lost 0.11 on
    test. A seed without a saved alternative keeps its own reading and the report says so."""
    from taskfit.compare.cv import across_seeds, pool_calibrations
    from taskfit.compare.final import final_settings
    from taskfit.compare.summary import Group
    from taskfit.config import InContextConfig

    sets = _calibration_records(
        tmp_path, [0.051, 0.112, 0.053, -0.002, 0.037], [0.031, 0.036, 0.032, 0.036, 0.034]
    )
    rule = across_seeds([r["metrics"]["cv"]["calibration"] for r in sets])
    assert rule["chosen"] and rule["gain"] > rule["noise"]  # mean +0.050, standard error 0.018
    one = _calibration_records(
        tmp_path, [0.010, -0.051, -0.093, -0.139, 0.114], [0.038, 0.027, 0.039, 0.043, 0.035], "single"
    )
    lines = pool_calibrations(tmp_path, sets + one)
    assert [r["metrics"]["cv"]["calibration"]["applied"] for r in sets] == ["none"] * 5
    assert [r.get("files") for r in sets] == [None] * 3 + [f"{sets[3]['cell']}/alternative", None]
    assert sets[3]["macro_f1"] == 0.54 and sets[3]["metrics"]["macro_f1"] == 0.54
    assert sets[0]["macro_f1"] == 0.47  # already none: read as it was
    assert all(r["metrics"]["cv"]["calibration"]["across_seeds"]["chosen"] == "none" for r in sets)
    assert [r["metrics"]["cv"]["calibration"]["applied"] for r in one] == ["contextual"] * 4 + ["none"]
    assert all("files" not in r for r in one)  # every seed as it chose: seed 4 on its own clear evidence
    assert len(lines) == 2 and "calibration none for the row" in lines[0]
    assert ": none did" in lines[0] and "not their own: seed(s) 3" in lines[0]
    assert "calibration contextual for the row" in lines[1] and "more than their noise: seed(s) 4" in lines[1]
    group = Group("in-context", "smollm2", "in-context", "16", ok=sets)
    settings, changed = final_settings(InContextConfig(name="in-context", backbone="smollm2"), group, [])
    assert settings.calibration == "none" and changed == {"calibration": "none"}
    # three seeds keep none on their own evidence, two lose much more with it: the row (and the final model,
    # whose prefix is none of theirs) is contextual, though most seeds are read with none
    split = _calibration_records(tmp_path / "split", [0.1, 0.1, 0.1, -0.3, -0.3], [0.03] * 5)
    pool_calibrations(tmp_path / "split", split)
    assert [r["metrics"]["cv"]["calibration"]["applied"] for r in split] == ["none"] * 3 + ["contextual"] * 2
    group = Group("in-context", "smollm2", "in-context", "16", ok=split)
    settings, _ = final_settings(InContextConfig(name="in-context", backbone="smollm2"), group, [])
    assert settings.calibration == "contextual"

    # a cell from before alternatives were saved (or of another key) keeps its own calibration, and says so
    for r in sets:
        r.pop("files", None)
        r["metrics"]["cv"]["calibration"]["applied"] = r["metrics"]["cv"]["calibration"]["chosen"]
    sets[3]["key"] = "changed"
    lines = pool_calibrations(tmp_path, sets)
    assert sets[3]["metrics"]["cv"]["calibration"]["applied"] == "contextual" and "files" not in sets[3]
    assert "seed(s) 3 kept their own choice" in lines[0]
    # an alternative/ that is not what a cell writes (no cv record) leaves the seed as it chose, no error
    (tmp_path / sets[3]["cell"] / "alternative" / "metrics.json").write_text('{"key": "changed"}')
    assert "seed(s) 3 kept their own choice" in pool_calibrations(tmp_path, sets)[0]
    # one seed: its own choice stands, nothing pooled
    assert pool_calibrations(tmp_path, sets[3:4]) == []


def test_a_cross_validated_in_context_cell_saves_the_calibration_it_did_not_choose(
    sentiment_csv, tiny_llama_dir, tmp_path
):
    """Each seed's cell writes alternative/ (the other calibration's held-out scores and test predictions,
    same test examples); the grid reads every seed with the calibration decided over them and says so."""
    import csv
    import json

    from taskfit.compare import run_experiment
    from taskfit.config import validate_config

    from .conftest import write_csv

    rows = list(csv.DictReader(sentiment_csv.open(encoding="utf-8")))
    train, test = write_csv(tmp_path / "tr.csv", rows[:40]), write_csv(tmp_path / "te.csv", rows[40:])
    cfg = validate_config(
        {
            "name": "cal",
            "data": {"train": str(train), "test": str(test), "shots": 6, "selection": "cv", "folds": 2},
            "seeds": [0, 1],
            "prompt": {
                "template": "Review: {text}\nSentiment:{answer}",
                "verbalizer": {"positive": [" positive"], "negative": [" negative"]},
            },
            "strategies": [{"name": "in-context", "backbone": str(tiny_llama_dir), "demos_per_class": 1}],
            "final": "none",
        }
    )
    summary = run_experiment(cfg, tmp_path / "out")
    out = tmp_path / "out"
    applied = set()
    for seed in (0, 1):
        cell = out / f"in-context/tiny-llama0/k6/seed-{seed}"
        own, alt = (json.loads((d / "metrics.json").read_text()) for d in (cell, cell / "alternative"))
        mine, other = own["cv"]["calibration"], alt["cv"]["calibration"]
        assert {mine["applied"], other["applied"]} == {"none", "contextual"} and alt["key"] == own["key"]
        assert own["diagnostics"]["calibration"] == mine["applied"]
        assert alt["diagnostics"]["calibration"] == other["applied"]
        rows = [(cell / d / "predictions.jsonl").read_text().splitlines() for d in ("", "alternative")]
        texts = [[json.loads(line)["text"] for line in r] for r in rows]
        assert len(rows[0]) == own["n"] and texts[0] == texts[1]
        files = next(c.get("files") for c in summary["cells"] if c["cell"].endswith(f"seed-{seed}"))
        applied.add(other["applied"] if files else mine["applied"])  # how the grid read this seed
    pooled = [n for n in summary["notes"] if "from the 2 seeds' held-out gains" in n]
    assert len(pooled) == 1, summary["notes"]
    row = "none" if "calibration none for the row" in pooled[0] else "contextual"
    assert applied == {row} or "more than their noise: seed(s)" in pooled[0]
