"""Honest choices: the yardstick on imbalanced labels, no claims without seed variance, selection on dev and
its regret on test."""

import random

import torch

from taskfit.compare import run_experiment
from taskfit.compare.summary import Group, group_records, recommend, selection_regret
from taskfit.config import BudgetConfig, validate_config
from taskfit.evaluation.ranking import Metric

from .conftest import WORDS, write_csv

MACRO_F1 = Metric("macro_f1", "macro-F1", "accuracy", "accuracy", True, why="the labels are imbalanced")


def _row(name, scores, dev=None, metric=None, floor=None, shots="16"):
    """A leaderboard row; ``scores``/``dev``: {seed: value} on test/dev; ``floor``: the dev majority score."""
    g = Group(name, "bb", name, shots, metric=metric or Group("x", "x", "x", "0").metric)
    key = g.metric.key
    for seed, value in scores.items():
        metrics = {}
        if dev is not None:
            metrics = {f"dev_{key}": dev[seed], "dev_majority": {key: floor if floor is not None else 0.0}}
        g.ok.append(
            {
                "seed": seed,
                key: value,
                "trainable_params": 10,
                "fit_seconds": 1.0,
                "predict_examples_per_s": 100.0,
                "cell": f"{name}/{seed}",
                "metrics": metrics,
            }
        )
    return g


def _ranked(groups):
    records = [
        {**r, "strategy": g.strategy, "backbone": "bb", "method": g.method, "shots": g.shots, "status": "ok"}
        for g in groups
        for r in g.ok
    ]
    return group_records(records, groups[0].metric)


def test_one_strategy_makes_no_comparison_claim():
    text = "\n".join(recommend([_row("only", {0: 0.8})], BudgetConfig(), None, 500))
    assert "Best by accuracy" in text
    for claim in ("clearly behind", "seed-to-seed", "distinguishable", "Behind it", "Cheapest within noise"):
        assert claim not in text


def test_one_seed_says_no_claim_can_be_made():
    rows = [_row("a", {0: 0.9}), _row("b", {0: 0.6})]  # a large gap, but one seed: no variance estimate
    text = "\n".join(recommend(rows, BudgetConfig(), None, 5000))
    assert "clearly behind it" not in text and "Behind it" not in text
    assert "With one seed there is no estimate of the seed-to-seed variance" in text


def test_rows_without_training_data_are_not_called_one_seed_rows():
    # the recommended row is zero-shot: the trained rows are paired over their seeds; the other zero-shot
    # row has no seed-to-seed variance at all, and the one-seed sentence would be wrong next to those verdicts
    best = _row("zero-shot", {None: 0.78}, dev={None: 0.80}, shots="0")
    other = _row("zero-shot-enc", {None: 0.69}, dev={None: 0.62}, shots="0")
    trained = _row("lora", {0: 0.66, 1: 0.64, 2: 0.65}, dev={0: 0.60, 1: 0.62, 2: 0.61}, shots="0")
    trained.shots = "16"
    text = "\n".join(recommend(_ranked([best, other, trained]), BudgetConfig(), None, 500))
    assert "**Best by accuracy on dev at K=16 per class (the most labels tried):** **zero-shot (bb)**" in text
    assert "With one seed" not in text and "Every other strategy" not in text
    assert "**Behind it** (paired over seeds, p < 0.05): lora (bb)." in text
    assert "Like it, zero-shot-enc (bb) learns from no labelled sample" in text and "±0.036" in text
    assert "paired over seeds" in text  # lora: a verdict over its seeds
    f1 = [
        _row(g.strategy, {None: 0.78}, dev={None: v}, metric=MACRO_F1, shots="0")
        for g, v in ((best, 0.8), (other, 0.6))
    ]
    text = "\n".join(recommend(_ranked(f1), BudgetConfig(), None, 500))
    assert (
        "learns from no labelled sample" in text and "is known to about" not in text
    )  # no binomial ± for F1


def test_several_seeds_still_call_a_clear_gap():
    rows = [_row("a", {0: 0.90, 1: 0.91, 2: 0.92}), _row("b", {0: 0.60, 1: 0.62, 2: 0.61})]
    text = "\n".join(recommend(rows, BudgetConfig(), None, 500))
    assert "Every other strategy is clearly behind it (paired over seeds" in text


def test_a_row_no_better_than_the_majority_class_is_never_recommended():
    majority_like = _row("zero-shot", {None: 0.46}, dev={None: 0.33}, metric=MACRO_F1, floor=0.33, shots="0")
    real = _row("lora", {0: 0.70, 1: 0.72}, dev={0: 0.30, 1: 0.34}, metric=MACRO_F1, floor=0.33)
    # lora's dev macro-F1 (0.32) is below the floor too: nothing is recommended, and the text says so
    text = "\n".join(recommend(_ranked([majority_like, real]), BudgetConfig(), None, 500))
    assert "Nothing to recommend" in text and "Best by" not in text
    better = _row("lora", {0: 0.70, 1: 0.72}, dev={0: 0.60, 1: 0.64}, metric=MACRO_F1, floor=0.33)
    text = "\n".join(recommend(_ranked([majority_like, better]), BudgetConfig(), None, 500))
    assert (
        "Best by macro-F1 on dev at K=16" in text
        and "**lora (bb)**" in text.split("Best by")[1].split("\n")[0]
    )
    assert "Ranked by macro-F1, not accuracy: the labels are imbalanced" in text
    assert "at or below the majority-class predictor on macro-F1 on dev: zero-shot (bb)" in text


def test_the_choice_is_made_on_dev_and_the_regret_measured_on_test():
    on_dev = _row("dev-best", {0: 0.70, 1: 0.72}, dev={0: 0.90, 1: 0.90})
    on_test = _row("test-best", {0: 0.80, 1: 0.82}, dev={0: 0.80, 1: 0.82})
    groups = _ranked([on_test, on_dev])
    assert [g.strategy for g in groups] == ["dev-best", "test-best"] and groups[0].by == "dev"
    regret, chosen, best = selection_regret(groups)
    assert chosen.strategy == "dev-best" and best.strategy == "test-best"
    assert abs(regret - (0.71 - 0.81)) < 1e-9
    text = "\n".join(recommend(groups, BudgetConfig(), None, 500))
    assert "Best by accuracy on dev at K=16" in text and "**dev-best (bb)** dev 0.900" in text
    assert "Selection regret" in text and "-0.100 (test-best (bb) scored 0.810 on test)" in text
    # rows ranked on test (run folders without dev scores) have no regret to measure
    assert selection_regret([_row("a", {0: 0.8}), _row("b", {0: 0.7})]) is None


def _imbalanced_csv(path, n=200):
    """85/15 'ham'/'spam', texts from separable word sets (built-in style: one text, one label)."""
    rng = random.Random(3)
    rows = []
    for i in range(n):
        label = "spam" if i % 20 < 3 else "ham"
        words = rng.sample(WORDS[0:6] if label == "ham" else WORDS[6:12], 2) + rng.sample(WORDS[12:22], 3)
        rows.append({"text": " ".join(words) + f" {i}", "label": label})
    return write_csv(path, rows)


def test_imbalanced_data_ranks_by_macro_f1_and_never_recommends_the_majority_answer(
    tmp_path, tiny_bert_dir, monkeypatch
):
    from taskfit.strategies.base import Predictions
    from taskfit.strategies.zero_shot import ZeroShot

    def always_ham(self, examples):  # a zero-shot model that answers the majority label every time
        names = list(self.ctx.labels)
        probs = torch.zeros(len(examples), len(names))
        probs[:, names.index("ham")] = 1.0
        return Predictions(["ham"] * len(examples), probs, names)

    monkeypatch.setattr(ZeroShot, "predict", always_ham)
    raw = {
        "name": "spam",
        "data": {"train": str(_imbalanced_csv(tmp_path / "sms.csv")), "shots": 4, "dev_shots": 4},
        "seeds": [0],
        "workers": 1,
        "strategies": [
            {"name": "zero-shot", "backbone": str(tiny_bert_dir)},
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1},
        ],
    }
    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    text = "\n".join(summary["recommendation"])
    assert "Ranked by macro-F1, not accuracy" in text
    assert "**zero-shot" not in text.split("Not recommended")[0]  # never the recommended row
    assert "zero-shot" in text  # named as at or below the majority-class predictor
    table = (tmp_path / "out" / "results.md").read_text()
    assert "macro-F1 (ranking metric)" in table and "dev macro-F1 (ranks)" in table
    zero = next(r for r in summary["strategies"] if r["strategy"] == "zero-shot")
    assert zero["ranked_by"] == "macro_f1 on dev" and zero["test_interval"] is not None


def test_the_final_model_trains_on_train_plus_dev_and_predict_uses_it(
    sentiment_csv, tiny_bert_dir, tmp_path, monkeypatch, capsys
):
    import json

    from taskfit.cli import main
    from taskfit.strategies.head_finetune import HeadFinetune

    seen = []
    original = HeadFinetune.fit

    def counting_fit(self, train, dev):
        seen.append((len(train), len(dev), self.config.epochs))
        return original(self, train, dev)

    monkeypatch.setattr(HeadFinetune, "fit", counting_fit)
    raw = {
        "name": "final",
        "data": {"train": str(sentiment_csv), "shots": 2, "dev_shots": 2},
        "seeds": [0],
        "workers": 1,
        "strategies": [{"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 3}],
        "final": "head-finetune",
    }
    cfg = validate_config(raw)
    run_experiment(cfg, tmp_path / "out", isolate=False)
    from taskfit.tasks import load_pools

    pools = load_pools(cfg.data)
    card = json.loads((tmp_path / "out" / "final" / "final.json").read_text())
    assert seen[-1][:2] == (len(pools.train) + len(pools.dev), 0)  # every label, nothing held out
    assert card["labelled_examples"] == len(pools.train) + len(pools.dev) and card["row"] == "head-finetune"
    assert 1 <= seen[-1][2] <= 3 and card["settings"]["epochs"] == seen[-1][2]  # the grid's chosen epochs
    assert "Trained on" in (tmp_path / "out" / "final" / "README.md").read_text()
    (tmp_path / "in.csv").write_text("text\ngood great movie\nawful boring plot\n")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "out"), "--input", str(tmp_path / "in.csv")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 2 and all(x["label"] in ("positive", "negative") for x in lines)


def test_a_final_that_names_no_strategy_is_refused_up_front(sentiment_csv, tiny_bert_dir, tmp_path):
    import pytest

    from taskfit.errors import TaskfitError

    raw = {
        "name": "final",
        "data": {"train": str(sentiment_csv), "shots": 2},
        "strategies": [{"name": "zero-shot", "backbone": str(tiny_bert_dir)}],
        "final": "lora",
    }
    with pytest.raises(
        TaskfitError, match="final: 'lora' is not a strategy id of this grid; one of zero-shot"
    ):
        run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    assert not (tmp_path / "out" / "final").exists()


def test_the_learning_curve_line_reads_test_not_each_k_s_own_dev_sample():
    """Each K draws its own dev sample (2K texts): dev scores across K are not a curve. Seen on mr: dev fell
    0.917 -> 0.792 from K=8 to K=32 while test rose 0.815 -> 0.819, and the line said -0.125."""
    k8 = _row("in-context", {0: 0.81, 1: 0.82}, dev={0: 0.92, 1: 0.92}, shots="8")
    k32 = _row("in-context", {0: 0.82, 1: 0.82}, dev={0: 0.79, 1: 0.79}, shots="32")
    text = "\n".join(recommend(_ranked([k8, k32]), BudgetConfig(), None, 500))
    line = next(x for x in text.splitlines() if "More labels" in x)
    assert "in-context (bb) +0.005 from K=8 to K=32" in line and "on test" in line
    best = next(x for x in text.splitlines() if "Best at each K" in x)
    assert "chosen on dev" in best and "K=8: in-context (bb) 0.815" in best
