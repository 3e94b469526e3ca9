"""Importance-weighted cross-validation (compare/prior.py): K-shot pool scores re-weighted to the data's label
shares, applied to the rows' selection scores, their floors, the pairing and the ensembles' weights."""

import numpy as np

from taskfit.compare.prior import label_shares, reweight_records, weighted_scores, weights_for
from taskfit.compare.selection import _score
from taskfit.compare.summary import group_records
from taskfit.data.readers import Example

PRIOR = {"neg": 0.2, "pos": 0.8}


def _rows(golds, preds):
    return [
        {"gold": g, "probs": {p: 0.9, ("neg" if p == "pos" else "pos"): 0.1}} for g, p in zip(golds, preds)
    ]


def test_weights_bring_a_balanced_pool_to_the_data_s_shares_and_leave_a_matching_one_alone():
    assert label_shares([Example("a", "pos")] * 8 + [Example("b", "neg")] * 2) == PRIOR
    w = weights_for(["neg", "pos", "pos", "neg"], PRIOR)
    assert np.allclose(w, [0.4, 1.6, 1.6, 0.4])  # 0.2 / 0.5 and 0.8 / 0.5
    assert weights_for(["pos"] * 8 + ["neg"] * 2, PRIOR) is None  # already at the data's shares
    assert weights_for(["pos", "other"], PRIOR) is None  # a label the data never had: no weighting


def test_a_re_weighted_pool_scores_what_the_same_predictions_score_at_the_data_s_shares():
    """On a balanced pool a row that calls 40% of the positives negative and every negative right looks
    fine; at 80% positive most of its 'neg' answers are wrong. The re-weighted pool score equals the score
    on a set with the data's shares and the same per-label behaviour."""
    pool_gold = ["neg"] * 10 + ["pos"] * 10
    pool_pred = ["neg"] * 10 + ["neg"] * 4 + ["pos"] * 6
    data_gold = ["neg"] * 10 + ["pos"] * 40  # the data's shares, same per-label error rates
    data_pred = ["neg"] * 10 + ["neg"] * 16 + ["pos"] * 24
    labels = ["neg", "pos"]
    index = {lab: i for i, lab in enumerate(labels)}

    def plain(gold, pred, key):
        return _score(np.array([index[g] for g in gold]), np.array([index[p] for p in pred]), 2, key)

    scores = weighted_scores(_rows(pool_gold, pool_pred), labels, PRIOR)
    for key in ("accuracy", "macro_f1"):
        assert abs(scores[f"dev_{key}"] - plain(data_gold, data_pred, key)) < 1e-9
    assert (
        plain(pool_gold, pool_pred, "macro_f1") - scores["dev_macro_f1"] > 0.13
    )  # the balanced pool flatters
    # the floor: always 'pos', the data's majority, at the data's shares
    assert abs(scores["dev_majority"]["accuracy"] - 0.8) < 1e-9
    assert abs(scores["dev_majority"]["macro_f1"] - plain(data_gold, ["pos"] * 50, "macro_f1")) < 1e-9


def test_re_weighting_can_change_the_ranking_and_keeps_the_unweighted_scores():
    pool_gold = ["neg"] * 10 + ["pos"] * 10
    leans_neg = _rows(pool_gold, ["neg"] * 10 + ["neg"] * 4 + ["pos"] * 6)  # every neg right, 6 of 10 pos
    leans_pos = _rows(pool_gold, ["neg"] * 6 + ["pos"] * 4 + ["pos"] * 10)  # 6 of 10 neg right, every pos

    def record(name, oof, dev):
        return {
            "cell": f"{name}/bb/k10/seed-0", "strategy": name, "backbone": "bb", "method": name, "shots": "10",
            "seed": 0, "status": "ok", "accuracy": 0.5, "macro_f1": 0.5,
            "metrics": {"oof": oof, "cv": {"folds": 2}, "dev_accuracy": dev, "dev_macro_f1": dev},
        }  # fmt: skip

    records = [record("neg-leaning", leans_neg, 0.82), record("pos-leaning", leans_pos, 0.80)]
    groups = group_records([dict(r, metrics=dict(r["metrics"])) for r in records])
    assert groups[0].strategy == "neg-leaning"  # unweighted: ahead on the balanced pool
    assert reweight_records(records, PRIOR, ["neg", "pos"]) == 2
    groups = group_records(records)
    assert groups[0].strategy == "pos-leaning"  # at 80% positive its few wrong answers cost less
    kept = records[0]["metrics"]["reweighted"]
    assert kept["unweighted"]["dev_macro_f1"] == 0.82 and kept["pool_shares"] == {"neg": 0.5, "pos": 0.5}
    # a record whose pool already has the data's shares is left as it was
    at_shares = record("same", _rows(["pos"] * 8 + ["neg"] * 2, ["pos"] * 10), 0.7)
    assert (
        reweight_records([at_shares], PRIOR, ["neg", "pos"]) == 0
        and at_shares["metrics"]["dev_macro_f1"] == 0.7
    )


def test_a_zero_shot_row_is_re_weighted_pool_by_pool():
    """Each seed's pool gets its own weights; the row's score is the mean over the pools."""
    pools = {
        "10/0": _rows(["neg"] * 10 + ["pos"] * 10, ["neg"] * 10 + ["pos"] * 10),  # all right
        "10/1": _rows(["neg"] * 10 + ["pos"] * 10, ["pos"] * 20),  # always pos
    }
    r = {"cell": "zs/bb/k0", "strategy": "zs", "backbone": "bb", "method": "zs", "shots": "0", "seed": None,
         "status": "ok", "metrics": {"pool_predictions": pools, "dev_macro_f1": 0.6, "dev_accuracy": 0.75}}  # fmt: skip
    assert reweight_records([r], PRIOR, ["neg", "pos"]) == 1
    always_pos = weighted_scores(pools["10/1"], ["neg", "pos"], PRIOR)["dev_macro_f1"]
    assert abs(r["metrics"]["dev_macro_f1"] - (1.0 + always_pos) / 2) < 1e-9


def test_the_ensemble_s_greedy_weights_count_each_example_by_its_weight():
    """Two members: x right on every neg, y right on every pos. Unweighted (balanced) either is as good;
    at 80% positive y's examples weigh four times as much, and the first pick is y."""
    from taskfit.compare.ensemble import ensemble_weights

    gold = ["neg"] * 5 + ["pos"] * 5
    x = _rows(gold, ["neg"] * 5 + ["neg"] * 5)
    y = _rows(gold, ["pos"] * 5 + ["pos"] * 5)
    weight = weights_for(gold, PRIOR)
    picked = ensemble_weights({"x": x, "y": y}, ["neg", "pos"], rounds=1, score="accuracy", weight=weight)
    assert picked == {"x": 0.0, "y": 1.0}
    unweighted = ensemble_weights({"x": x, "y": y}, ["neg", "pos"], rounds=1, score="accuracy")
    assert unweighted == {"x": 1.0, "y": 0.0}  # a tie: the earlier (better ranked) row


def test_prompt_finetune_is_not_scored_as_a_demonstration_prefix():
    """prompt-finetune has demos_per_class (LM-BFF's context) but trains: it is cross-validated over folds."""
    from taskfit.compare.cv import uses_one_prefix
    from taskfit.config.classification import InContextConfig, PromptFinetuneConfig

    assert uses_one_prefix(InContextConfig(name="in-context", backbone="smollm2"))
    assert not uses_one_prefix(PromptFinetuneConfig(name="prompt-finetune", backbone="smollm2"))


def test_a_cross_validated_grid_on_imbalanced_data_ranks_by_re_weighted_scores(
    sentiment_csv, tiny_bert_dir, tmp_path
):
    """K=2 per class drawn from a 75/25 file: the pools are balanced, the data is not. Every row's selection
    score is its out-of-fold (or pool) score at 75/25, the report says so, and the database keeps the rest."""
    import csv

    from taskfit.compare import run_experiment
    from taskfit.config import validate_config

    from .conftest import write_csv

    rows = list(csv.DictReader(sentiment_csv.open()))
    skewed = [r for r in rows if r["label"] == "positive"] + [r for r in rows if r["label"] == "negative"][
        :10
    ]
    train = write_csv(tmp_path / "skewed.csv", skewed)  # 30 positive, 10 negative
    test = write_csv(tmp_path / "test.csv", skewed[::4])
    raw = {
        "name": "iwcv",
        "data": {"train": str(train), "test": str(test), "shots": [2], "selection": "cv", "folds": 2},
        "seeds": [0, 1],
        "race": False,  # both seeds of every row: the re-weighting is checked on each
        "workers": 1,
        "final": "none",
        "prompt": {
            "template": "{text} It was [MASK].",
            "verbalizer": {"positive": "good", "negative": "bad"},
        },
        "strategies": [
            {"name": "zero-shot", "backbone": str(tiny_bert_dir)},
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1},
        ],
    }
    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    text = "\n".join(summary["recommendation"])
    assert "Scores re-weighted to your data's label shares** (negative 25%, positive 75%" in text
    assert "the K-shot pools hold negative 50%, positive 50%" in text
    finetuned = next(r for r in summary["strategies"] if r["strategy"] == "head-finetune")
    from taskfit.compare import store

    stored = store.rows(store.connect(tmp_path / "out"), strategy="head-finetune")
    prior = {"negative": 0.25, "positive": 0.75}
    expected = [weighted_scores(r["metrics"]["oof"], ["negative", "positive"], prior) for r in stored]
    assert len(expected) == 2 and all(expected)
    mean = sum(e["dev_macro_f1"] for e in expected) / 2
    assert abs(finetuned["selection_mean"] - mean) < 1e-9  # ranked at the data's shares
    assert all("reweighted" not in r["metrics"] for r in stored)  # the database keeps what the cells measured
