import pytest
import torch

from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.prompts import Template, Verbalizer
from taskfit.prompts.demonstrations import select_fixed, select_similar


def test_template_renders_prompt_and_answer():
    t = Template.parse("Review: {text}\nSentiment:{answer}\n")
    e = Example("so {good}", "positive")
    assert t.prompt(e) == "Review: so {good}\nSentiment:"
    assert t.with_answer(e, " positive") == "Review: so {good}\nSentiment: positive\n"


def test_template_with_pair_and_literal_braces():
    t = Template.parse("{{Q}} {text} || {text_pair} ->{answer}")
    assert t.prompt(Example("a", "x", text_pair="b")) == "{Q} a || b ->"
    with pytest.raises(TaskfitError, match="has none"):
        t.prompt(Example("a", "x"))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Review: {txt} {answer}", "unknown field '{txt}'.*Did you mean 'text'"),
        ("Review: {text}", "exactly one \\{answer\\} slot \\(found 0\\)"),
        ("{text}{answer}{answer}", "found 2"),
        ("Sentiment:{answer}", "no \\{text\\} field"),
    ],
)
def test_template_errors(source, message):
    with pytest.raises(TaskfitError, match=message):
        Template.parse(source)


def test_verbalizer_multi_word_and_errors():
    v = Verbalizer.build({"pos": [" good", " great"], "neg": [" bad"]}, ["neg", "pos"])
    assert v.words == (" bad", " good", " great") and v.word_labels == (0, 1, 1)
    assert v.first_word("pos") == " good"
    with pytest.raises(TaskfitError, match="label 'neg' has no verbalizer word"):
        Verbalizer.build({"pos": [" good"]}, ["neg", "pos"])
    with pytest.raises(TaskfitError, match="Did you mean 'pos'"):
        Verbalizer.build({"pso": [" good"], "neg": [" bad"]}, ["neg", "pos"])


def test_balanced_selection_takes_k_per_class():
    pool = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(10)]
    demos = select_fixed(pool, 2, ["a", "b", "c"], "balanced", seed=0)
    assert sorted(e.label for e in demos) == ["a", "a", "b", "b", "c", "c"]
    assert demos == select_fixed(pool, 2, ["a", "b", "c"], "balanced", seed=0)
    assert len(select_fixed(pool, 2, ["a", "b", "c"], "random", seed=0)) == 6


def test_similar_selection_puts_nearest_last():
    pool = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]), dim=-1)
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1]]), dim=-1)
    assert select_similar(pool, query, 2) == [[2, 0]]


def test_balanced_demonstrations_are_interleaved_not_in_class_blocks():
    pool = [Example(f"{lab}{i}", lab) for lab in "abc" for i in range(10)]
    last_labels = set()
    for seed in range(8):
        demos = select_fixed(pool, 4, ["a", "b", "c"], "balanced", seed=seed)
        labels = [e.label for e in demos]
        assert sorted(labels) == sorted("abc" * 4)
        assert all(sorted(labels[i : i + 3]) == ["a", "b", "c"] for i in range(0, 12, 3))  # rounds
        assert all(x != y for x, y in zip(labels, labels[1:]))  # never two of a class in a row
        last_labels.add(labels[-1])
    assert last_labels == {"a", "b", "c"}  # no label is always the one nearest the query
    shuffled = [
        select_fixed(pool, 4, ["a", "b", "c"], "balanced", seed=s, order="shuffled") for s in range(8)
    ]
    assert any(x.label == y.label for d in shuffled for x, y in zip(d, d[1:]))  # shuffling makes blocks


def test_interleaving_with_unequal_classes_keeps_every_demonstration():
    pool = [Example("a0", "a"), Example("b0", "b"), Example("b1", "b"), Example("b2", "b")]
    demos = select_fixed(pool, 3, ["a", "b"], "balanced", seed=1)
    assert sorted(e.text for e in demos) == ["a0", "b0", "b1", "b2"]
