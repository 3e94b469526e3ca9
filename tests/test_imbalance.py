"""Issue 36: on imbalanced labels the trained strategies weigh each label alike (class_weight: balanced, the
default for classification), so that they learn the rare label instead of the prior."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.conftest import WORDS


def _toy(n: int, minority: int, seed: int = 1):
    from taskfit.data.readers import Example

    rng = random.Random(seed)
    pos, neg, filler = WORDS[0:6], WORDS[6:12], WORDS[12:22]
    out = []
    for i in range(n):
        label = "neg" if i < minority else "pos"
        words = rng.sample(pos if label == "pos" else neg, 2) + rng.sample(filler, 3)
        rng.shuffle(words)
        out.append(Example(" ".join(words), label))
    rng.shuffle(out)
    return out


def _tiny_head(backbone, **settings):
    """A head-finetune config on the tiny test encoder that learns the toy words in a few epochs."""
    from taskfit.config import validate_config

    row = {
        "name": "head-finetune",
        "backbone": str(backbone),
        "freeze_embeddings": False,
        "lr": 1e-3,
        "head_lr": 1e-2,
    }
    return validate_config(
        {"name": "x", "data": {"train": "x.csv"}, "strategies": [{**row, **settings}]}
    ).strategies[0]


def test_balanced_weights_are_one_on_equal_shares_and_inverse_frequency_otherwise():
    from taskfit.data.readers import Example
    from taskfit.strategies.base import balanced_class_weights

    equal = [Example("x", lab) for lab in "abab"]
    assert balanced_class_weights(equal, ["a", "b"]).tolist() == [1.0, 1.0]
    skewed = [Example("x", "a")] * 9 + [Example("x", "b")]
    assert balanced_class_weights(skewed, ["a", "b", "c"]).tolist() == pytest.approx([10 / 18, 5.0, 1.0])


def test_on_90_10_the_unweighted_head_predicts_the_majority_and_the_balanced_one_recovers_the_minority(
    tiny_bert_dir,
):
    from taskfit.strategies import Context, build_strategy

    train, test = _toy(60, 6), _toy(40, 20, seed=2)
    predicted = {}
    for weighting in ("none", "balanced"):
        config = _tiny_head(tiny_bert_dir, epochs=4, class_weight=weighting)
        strategy = build_strategy(config, Context(labels=["neg", "pos"], seed=0))
        strategy.fit(train, [])
        labels = strategy.predict(test).labels
        predicted[weighting] = (Counter(labels)["neg"], sum(p == e.label for p, e in zip(labels, test)))
    assert predicted["none"][0] <= 2, predicted  # the prior: (almost) never the rare label
    assert predicted["balanced"][0] >= 10 and predicted["balanced"][1] > predicted["none"][1], predicted


def test_pair_sampling_anchors_each_label_as_the_config_says():
    from taskfit.strategies.contrastive import make_pairs

    examples = _toy(40, 8)
    labels = [e.label for e in examples]

    def anchors(balanced: bool) -> Counter:
        pairs = make_pairs(examples, 3, seed=0, balanced=balanced)
        return Counter(labels[i] for i, _, target in pairs if target == 1.0)  # one positive pair per anchor

    assert anchors(False) == {"pos": 32 * 3, "neg": 8 * 3}  # every example anchors once per iteration
    assert anchors(True) == {"pos": 20 * 3, "neg": 20 * 3}  # every label anchors as often
    # the negatives of a balanced draw still pair each anchor with the other label
    pairs = make_pairs(examples, 1, seed=0, balanced=True)
    assert all(labels[i] != labels[j] for i, j, t in pairs if t == 0.0)


def test_class_weight_is_declared_where_it_applies():
    from taskfit.registry import ENTRIES

    for entry in ENTRIES:
        field = entry.config.model_fields.get("class_weight")
        if entry.task == "classification" and entry.name not in ("zero-shot", "in-context"):
            assert field is not None and field.default == "balanced", entry.name
        elif entry.task in ("ner", "extractive-qa", "relation") and field is not None:
            assert field.default == "none", (entry.task, entry.name)  # tags, spans: not weighted


def test_balanced_pairs_on_equal_shares_are_the_pairs_drawn_before():
    """K per class: the cell key leaves class_weight out, so the pairs must be the very ones drawn before it."""
    from taskfit.strategies.contrastive import make_pairs

    examples = _toy(40, 20)
    assert make_pairs(examples, 3, seed=4, balanced=True) == make_pairs(examples, 3, seed=4, balanced=False)


def _skewed_probs(seed: int = 0):
    """Held-out probabilities of a model that learned the prior: on 90/10 labels the rare label's examples
    get a higher probability of it than the others (0.32-0.48 against 0.05-0.30) but never the top one."""
    import numpy as np

    rng = np.random.default_rng(seed)
    gold = ["maj"] * 90 + ["min"] * 10
    p_min = np.r_[rng.uniform(0.05, 0.30, 90), rng.uniform(0.32, 0.48, 10)]
    return gold, np.c_[1 - p_min, p_min]


def test_the_correction_recovers_the_rare_label_a_model_never_answers():
    from taskfit.compare.correction import choose_correction

    gold, probs = _skewed_probs()
    assert (probs.argmax(1) == 1).sum() == 0  # uncorrected: the majority label for every example
    record, crossed = choose_correction(gold, probs, ["maj", "min"], "macro_f1")
    assert record["chosen"] and "decision" in record["applied"], record
    assert record["decision"]["min"] > 0 > record["decision"]["maj"]
    predicted = crossed.argmax(1)  # cross-fitted: each part's offsets were fitted on the other parts
    assert (predicted[90:] == 1).sum() >= 8 and (predicted[:90] == 1).sum() <= 5, predicted
    # accuracy is the metric: no decision offsets (the calibrated top label is already the best guess; a
    # decision, if taken, is the calibrated probabilities' top label)
    record, _ = choose_correction(gold, probs, ["maj", "min"], "accuracy")
    assert set(record["decision"].values()) == {0.0}


def test_no_correction_when_the_model_already_decides_well():
    import numpy as np

    from taskfit.compare.correction import choose_correction

    rng = np.random.default_rng(1)
    gold = ["a"] * 30 + ["b"] * 30
    p_b = np.r_[rng.uniform(0.05, 0.45, 30), rng.uniform(0.55, 0.95, 30)]
    record, crossed = choose_correction(gold, np.c_[1 - p_b, p_b], ["a", "b"], "macro_f1")
    assert not record["chosen"] and "decision" not in record["applied"]
    assert (crossed.argmax(1) == np.r_[np.zeros(30), np.ones(30)]).all()  # the model's own labels
    assert choose_correction(gold[:8], np.c_[1 - p_b, p_b][:8], ["a", "b"], "macro_f1") is None  # too few


def test_the_shares_offsets_calibrate_probabilities_to_the_data_shares():
    import numpy as np
    import torch

    from taskfit.compare.correction import choose_correction
    from taskfit.strategies.base import Predictions
    from taskfit.strategies.corrected import apply_correction

    # a model trained with balanced weights on 80/20 data: it says 50/50 on average
    rng = np.random.default_rng(2)
    gold = ["maj"] * 80 + ["min"] * 20
    p_min = np.r_[rng.uniform(0.2, 0.6, 80), rng.uniform(0.4, 0.8, 20)]
    probs = np.c_[1 - p_min, p_min]
    record, _ = choose_correction(gold, probs, ["maj", "min"], "macro_f1")
    assert "shares" in record["applied"] and record["log_loss"]["shares"] < record["log_loss"]["model"]
    preds = apply_correction(
        Predictions(["maj"] * 100, torch.tensor(probs, dtype=torch.float), ["maj", "min"]), record
    )
    assert preds.probabilities is not None
    assert abs(float(preds.probabilities[:, 1].mean()) - 0.2) < 0.05  # the data's share, not 0.5
    assert float(torch.tensor(probs)[:, 1].mean()) > 0.35


def test_a_cross_validated_cell_chooses_its_correction_out_of_fold_and_its_saved_model_keeps_it(
    tiny_bert_dir, tmp_path
):
    from taskfit.compare.cv import cv_fit
    from taskfit.serving.predictor import Predictor
    from taskfit.strategies import Context, build_strategy, load_strategy
    from taskfit.strategies.corrected import Corrected
    from taskfit.tasks import get_task

    config = _tiny_head(tiny_bert_dir, epochs=3, class_weight="none")
    ctx = Context(labels=["neg", "pos"], seed=0, choose_by="macro_f1")
    strategy, metrics = cv_fit(config, ctx, _toy(60, 8), [], 4, get_task("classification"), build_strategy)
    record = metrics["cv"]["correction"]
    assert record["on"] == 60 and record["metric"] == "macro_f1"
    oof = [max(o["probs"], key=o["probs"].get) for o in metrics["oof"]]
    # unweighted, the folds answered the majority label throughout (macro-F1 at the floor); the offsets
    # chosen on the other parts' out-of-fold predictions recover some of the rare label
    assert record["before"]["dev_macro_f1"] < 0.5 and "decision" in record["applied"], record
    assert isinstance(strategy, Corrected) and oof.count("neg") >= 3  # the corrected out-of-fold rows
    assert metrics["dev_macro_f1"] > record["before"]["dev_macro_f1"] + 0.1  # selection: corrected, crossed
    test = _toy(30, 15, seed=3)
    strategy = Corrected(getattr(strategy, "inner", strategy), {**record, "applied": ["shares", "decision"]})
    expected = strategy.predict(test)
    strategy.save(tmp_path / "model")
    loaded = load_strategy(tmp_path / "model")
    assert isinstance(loaded, Corrected) and loaded.predict(test).labels == expected.labels
    served = Predictor.load(tmp_path / "model", device="cpu").predict(test[:2])
    assert set(served[0]) == {"label", "scores", "probabilities"}
    assert abs(sum(served[0]["probabilities"].values()) - 1) < 1e-5


def test_correction_false_leaves_the_model_as_it_is_and_changes_the_cell_key():
    from taskfit.compare.correction import correct_held_out
    from taskfit.compare.plan import plan_cells
    from taskfit.config import validate_config
    from taskfit.strategies import Context

    gold, probs = _skewed_probs()
    rows = [{"maj": float(a), "min": float(b)} for a, b in probs]
    on = Context(labels=["maj", "min"], seed=0, choose_by="macro_f1")
    assert correct_held_out("model", gold, rows, on, None)[3]["applied"]
    off = Context(labels=["maj", "min"], seed=0, choose_by="macro_f1", correct=False)
    assert correct_held_out("model", gold, rows, off, None) == ("model", None, rows, None)
    raw = {"name": "x", "data": {"train": "x.csv"}, "strategies": [{"name": "head-finetune"}]}
    keys = [
        plan_cells(validate_config({**raw, **extra}), "f")[0].key for extra in ({}, {"correction": False})
    ]
    assert keys[0] != keys[1]


def test_the_label_decision_is_shares_plus_decision_even_where_only_the_decision_is_applied():
    """The decision offsets were fitted and scored on top of the shares: the deployed labels must be those."""
    import torch

    from taskfit.strategies.base import Predictions
    from taskfit.strategies.corrected import apply_correction

    probs = torch.tensor([[0.70, 0.30], [0.55, 0.45], [0.9, 0.1]])
    record = {"shares": {"a": -0.3, "b": 0.3}, "decision": {"a": -0.1, "b": 0.1}}
    preds = Predictions(["a", "a", "a"], probs, ["a", "b"])
    decided = apply_correction(preds, {**record, "applied": ["decision"]})
    expected = torch.softmax(torch.log(probs) + torch.tensor([-0.4, 0.4]), dim=-1)
    assert torch.allclose(decided.probs, expected) and decided.labels == ["a", "b", "a"]
    assert decided.probabilities is None  # shares not applied to the probabilities
    calibrated = apply_correction(preds, {**record, "applied": ["shares"]})
    assert calibrated.labels == ["a", "a", "a"] and torch.allclose(
        calibrated.probs, probs
    )  # shares: no label
    assert torch.allclose(
        calibrated.probabilities, torch.softmax(torch.log(probs) + torch.tensor([-0.3, 0.3]), -1)
    )
    # a temperature tempers the scores and never changes a label
    hot = apply_correction(preds, {**record, "temperature": 4.0, "applied": ["shares"]})
    assert hot.labels == ["a", "a", "a"] and torch.allclose(
        hot.probs, torch.softmax(torch.log(probs) / 4, -1)
    )
    assert float(hot.probs[2, 0]) < 0.7 < float(probs[2, 0])


def test_correction_false_also_leaves_the_cells_choices_on_accuracy(tmp_path):
    """Off, a cell chooses as before the correction existed (no ranking metric or label shares in its key)."""
    from taskfit.compare.plan import plan_cells
    from taskfit.config import validate_config

    raw = {"name": "x", "data": {"train": "x.csv"}, "strategies": [{"name": "head-finetune"}]}
    shares = {"a": 0.8, "b": 0.2}
    on = plan_cells(validate_config(raw), "f", ranked_by="macro_f1", prior=shares)[0]
    off = plan_cells(validate_config({**raw, "correction": False}), "f", ranked_by="macro_f1", prior=shares)[
        0
    ]
    assert on.choose_by == "macro_f1" and off.choose_by is None


def test_an_average_aligns_its_members_labels_and_averages_their_scores():
    import torch

    from taskfit.strategies.averaged import Averaged
    from taskfit.strategies.base import Predictions

    class Fixed:
        def __init__(self, probs, names):
            self.probs, self.names, self.config = torch.tensor(probs), names, None

        def predict(self, examples):
            return Predictions([self.names[int(i)] for i in self.probs.argmax(-1)], self.probs, self.names)

    a = Fixed([[0.9, 0.1], [0.4, 0.6]], ["x", "y"])
    b = Fixed([[0.2, 0.8], [0.3, 0.7]], ["y", "x"])  # the other label order
    out = Averaged([a, b], ["a", "b"], ["x", "y"]).predict([None, None])
    assert torch.allclose(out.probs, torch.tensor([[0.85, 0.15], [0.55, 0.45]]))
    assert out.labels == ["x", "x"] and out.probabilities is None


def test_an_update_from_an_averaged_final_model_names_a_member(tmp_path):
    import json

    import pytest

    from taskfit.continual.incremental import check_saved_run
    from taskfit.errors import TaskfitError

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "strategy.json").write_text(
        json.dumps(
            {"members": ["members/0"], "member_names": ["lora (minilm)"], "strategy": {"name": "ensemble"}}
        )
    )
    with pytest.raises(TaskfitError, match="average of 1 models .*members/0"):
        check_saved_run(str(tmp_path), None)
