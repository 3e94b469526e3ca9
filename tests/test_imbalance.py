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
    from taskfit.config import validate_config
    from taskfit.strategies import Context, build_strategy

    train, test = _toy(60, 6), _toy(40, 20, seed=2)
    predicted = {}
    for weighting in ("none", "balanced"):
        raw = {
            "name": "x",
            "data": {"train": "x.csv"},
            "strategies": [
                {
                    "name": "head-finetune",
                    "backbone": str(tiny_bert_dir),
                    "epochs": 4,
                    "class_weight": weighting,
                    "freeze_embeddings": False,
                    "lr": 1e-3,
                    "head_lr": 1e-2,
                }
            ],
        }
        strategy = build_strategy(validate_config(raw).strategies[0], Context(labels=["neg", "pos"], seed=0))
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
