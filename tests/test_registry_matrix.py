"""Every REGISTRY entry on the tiny models: build, fit one epoch on a few examples, save, load, and get the same
predictions back; count what trains (> 0 where the entry trains weights, 0 where it does not) and check that
the weights a tuning method freezes are bit-identical after fit."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from taskfit.config import PromptConfig
from taskfit.data.ner import from_tokens
from taskfit.data.readers import Example
from taskfit.registry import REGISTRY
from taskfit.strategies import BackboneCache, Context, Strategy, build_strategy, load_strategy
from taskfit.strategies.base import (
    CountsParsing,
    DevScored,
    Diagnoses,
    ReportsAlignment,
    ScoresPerplexity,
    TakesExtraLoss,
)
from tests.conftest import WORDS

FIXTURES = Path(__file__).parent / "fixtures"
LABELS = ["negative", "positive"]
PROMPT = PromptConfig(
    template="Review: {text}\nSentiment:{answer}",
    verbalizer={"positive": [" positive"], "negative": [" negative"]},
)
# settings that keep each entry to a second or two; only the ones a config class has are used
SMALL = {
    "epochs": 1,
    "batch_size": 4,
    "max_length": 32,
    "doc_stride": 8,
    "num_iterations": 1,
    "num_virtual_tokens": 2,
    "demos": 1,
    "demos_per_class": 1,
    "decoding": {"max_new_tokens": 4},
    "eval_batch_size": 4,
}


def classification(n: int, offset: int = 0) -> list[Example]:
    pos, neg = ["good great fun", "loved wonderful superb"], ["bad awful boring", "hated terrible dull"]
    return [
        Example(f"{(pos if i % 2 else neg)[(i // 2) % 2]} movie {i + offset}", LABELS[i % 2])
        for i in range(n)
    ]


def ner(n: int) -> list:
    rng = random.Random(0)
    filler = [w for w in WORDS[:20] if w not in ("city", "person", "who")]
    out = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(3, 6)):
            r = rng.random()
            if r < 0.25:
                tokens.append("city"), tags.append("B-LOC")
            elif r < 0.4:
                tokens += ["person", "who"]
                tags += ["B-PER", "I-PER"]
            else:
                tokens.append(rng.choice(filler)), tags.append("O")
        out.append(from_tokens(tokens, tags))
    return out


def data(task: str) -> tuple[list, list, list[str], PromptConfig | None]:
    """(train, test, labels, prompt) for a task: a few examples, enough for one epoch to move the weights."""
    if task == "classification":
        return classification(8), classification(4, offset=50), LABELS, PROMPT
    if task == "generation":
        rng = random.Random(0)
        pairs = [rng.sample(WORDS[:14], 3) for _ in range(8)]
        examples = [Example(" ".join(p), target=" ".join(reversed(p))) for p in pairs]
        return examples[:6], examples[6:], [], None
    if task == "ner":
        sentences = ner(10)
        return sentences[:6], sentences[6:], ["LOC", "PER"], None
    if task == "relation":
        from taskfit.tasks.relation import read_relations

        train = read_relations(FIXTURES / "relation" / "train.jsonl")[:8]
        return (
            train,
            read_relations(FIXTURES / "relation" / "test.jsonl")[:4],
            sorted({e.label for e in train}),
            None,
        )
    from taskfit.tasks.extractive_qa import read_qa

    return read_qa(FIXTURES / "qa" / "train.json")[:4], read_qa(FIXTURES / "qa" / "test.jsonl")[:3], [], None


def comparable(task: str, predictions):
    """What must not change between a strategy and its reloaded copy."""
    if task in ("classification", "relation"):
        return predictions.labels, predictions.probs
    if task == "generation":
        return predictions.texts
    if task == "ner":
        return [p["tags"] for p in predictions]
    return [(a.text, a.start, a.end, round(a.score, 5)) for a in predictions]


def check_predictions(task: str, predictions, test: list, labels: list[str]) -> None:
    """One prediction per input, of the task's shape: known labels with probabilities that sum to 1 and
    whose top is the label, one tag per word, answers that are spans of their context."""
    if task in ("classification", "relation"):
        assert len(predictions.labels) == len(test) and set(predictions.labels) <= set(labels)
        assert predictions.probs.shape == (len(test), len(predictions.label_names))
        assert torch.allclose(predictions.probs.sum(-1), torch.ones(len(test)), atol=1e-4)
        top = [predictions.label_names[i] for i in predictions.probs.argmax(-1).tolist()]
        assert top == predictions.labels
    elif task == "generation":
        assert len(predictions.texts) == len(test) and all(isinstance(t, str) for t in predictions.texts)
    elif task == "ner":
        assert len(predictions) == len(test)
        known = {"O"} | {f"{p}-{t}" for p in "BI" for t in labels}
        for p, e in zip(predictions, test):
            assert len(p["tags"]) == len(e.tokens) and set(p["tags"]) <= known, p
    else:  # extractive-qa
        assert len(predictions) == len(test)
        for a, e in zip(predictions, test):
            assert e.text_pair[a.start : a.end] == a.text


def as_gold(task: str, test: list, predictions) -> list:
    """``test`` relabelled with the strategy's own predictions."""
    from dataclasses import replace

    if task in ("classification", "relation"):
        return [replace(e, label=label) for e, label in zip(test, predictions.labels)]
    if task == "ner":
        return [replace(e, tags=tuple(p["tags"])) for e, p in zip(test, predictions)]
    return [replace(e, answers=((a.text, a.start),)) for e, a in zip(test, predictions)]


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.allclose(a, b, atol=1e-5)
    if isinstance(a, tuple | list) and a and isinstance(a[-1], torch.Tensor):
        return a[0] == b[0] and same(a[-1], b[-1])
    return a == b


ENTRIES = [pytest.param(e, id=f"{e.task}/{e.name}") for e in REGISTRY.entries()]


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_entry_fits_saves_and_reloads_identically(entry, tiny_bert_dir, tiny_llama_dir, tmp_path):
    backbone = tiny_bert_dir if entry.accepts("encoder") else tiny_llama_dir
    fields = entry.config.model_fields
    raw = {"name": entry.name, "backbone": str(backbone), **{k: v for k, v in SMALL.items() if k in fields}}
    if entry.name == "lora" and entry.accepts("encoder"):
        raw["target_modules"] = ["query", "value"]
    if entry.task == "classification" and not entry.trains_weights:
        raw.pop("max_length")  # a prompt budget: 32 tokens is less than the template and demonstrations
    config = entry.config.model_validate(raw)
    train, test, labels, prompt = data(entry.task)
    ctx = Context(labels=labels, prompt=prompt, seed=0, backbones=BackboneCache())
    strategy = build_strategy(config, ctx)
    assert isinstance(strategy, entry.load()) and isinstance(strategy, Strategy)

    # the optional capabilities callers rely on are declared (protocols), not probed with hasattr
    if entry.task == "generation":
        assert isinstance(strategy, ScoresPerplexity)
    if entry.task == "ner":
        prompted = not entry.trains_weights
        assert isinstance(strategy, CountsParsing if prompted else ReportsAlignment)
    if entry.key == ("classification", "in-context"):
        assert isinstance(strategy, Diagnoses)
    if entry.incremental:  # a `from:` update adds its continual method's loss
        assert isinstance(strategy, TakesExtraLoss)

    trained, total = strategy.trainable_parameters()
    assert total > 0
    if entry.trains_weights:
        assert trained > 0
    else:
        assert trained == 0
    # what a tuning method leaves alone must stay bit-identical (the task model, or a causal LM's peft wrapper)
    modules = [getattr(strategy, a, None) for a in ("model", "net", "lm", "encoder")]
    model = next((m for m in modules if isinstance(m, torch.nn.Module)), None)
    frozen = {}
    if model is not None:
        frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}

    strategy.fit(train if entry.uses_examples else [], [])
    for name, value in frozen.items():
        assert torch.equal(dict(model.named_parameters())[name], value), f"{name} moved"
    predictions = strategy.predict(test)
    check_predictions(entry.task, predictions, test, labels)
    before = comparable(entry.task, predictions)
    if isinstance(strategy, DevScored):  # what early stopping and a search read
        assert strategy.dev_metric.startswith("dev_")
        # scored against its own predictions, a strategy agrees with itself at least as well as with the gold
        assert strategy.dev_score(as_gold(entry.task, test, predictions)) >= strategy.dev_score(test)
        if entry.task == "classification":  # dev_accuracy: the share of labels right, counted here
            right = sum(p == e.label for p, e in zip(predictions.labels, test)) / len(test)
            assert strategy.dev_score(test) == pytest.approx(right)
    strategy.save(tmp_path / "model")
    again = load_strategy(tmp_path / "model", BackboneCache())
    assert type(again) is type(strategy)
    assert same(comparable(entry.task, again.predict(test)), before)


@pytest.mark.parametrize("entry", ENTRIES)
def test_what_an_entry_learns_is_declared_once_and_export_reads_it(entry):
    """Issue 32: export decided 'trains nothing' from a missing lr while the entry's `trains` meant 'reads
    the K-shot sample' (in-context: yes and no). One declaration, ``learns``, and both derived from it."""
    from taskfit.export import trains_nothing

    assert entry.learns in ("nothing", "demonstrations", "weights")
    assert trains_nothing(entry.task, entry.name) is (not entry.trains_weights)
    assert entry.uses_examples is (entry.learns != "nothing")
    # the declaration agrees with the config class: what fits weights by gradient descent has a learning rate
    assert ("lr" in entry.config.model_fields) is entry.trains_weights
