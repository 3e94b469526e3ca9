"""The one small interface every strategy implements, the optional capabilities some declare, and what they
share.

Every strategy has ``config``, ``log``, ``fit``, ``predict``, ``trainable_parameters``, ``save`` and the
classmethod ``load``; ``predict`` returns its task's type (``Strategy[Predictions]`` for classification and
relation, ``Strategy[Generations]``, ``Strategy[NerPredictions]``, ``Strategy[list[Answer]]``). What only some
strategies can do is a small runtime-checkable protocol, so callers ask ``isinstance(s, Diagnoses)``:

  Diagnoses         diagnostics(predicted, gold) -> dict (in-context: how often the last demo's label wins)
  ScoresPerplexity  perplexity(examples) -> {"loss", "perplexity", "target_tokens"} (generation)
  DevScored         dev_metric + dev_score(examples): what early stopping and a search maximise
  TakesExtraLoss    extra_loss: a term added to every training batch's loss (``from:`` updates)
  CountsParsing     counts: how generated answers parsed (prompted NER)
  ReportsAlignment  stats: how the last sentences met the tokenizer (NER taggers)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from taskfit.config import PromptConfig, StrategyBase
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.models.backbones import Backbone, BackboneKind, load_backbone, resolve_device
from taskfit.prompts import Template, Verbalizer
from taskfit.training.distributed import RunOptions

STRATEGY_FILE = "strategy.json"


@dataclass
class Predictions:
    labels: list[str]
    probs: torch.Tensor  # (N, C) probabilities over ``label_names``; the label is their top
    label_names: list[str]
    # (N, C) probabilities calibrated to the data's label shares, where a decision correction fitted them
    # (``strategies.corrected``); None: ``probs`` are the model's own
    probabilities: torch.Tensor | None = None


class BackboneCache:
    """Loaded backbones shared by strategies that never change their weights (zero-shot, in-context).

    Owned by whoever runs an experiment; strategies that train load their own fresh copy.
    """

    def __init__(self, trust_remote_code: bool = False, device: str = "auto") -> None:
        self.trust_remote_code = trust_remote_code
        self.device = device
        self._loaded: dict[tuple[str, str | None], Backbone] = {}

    def get(self, name: str, kind: BackboneKind | None = None) -> Backbone:
        key = (name, kind)
        if key not in self._loaded:
            self._loaded[key] = load_backbone(name, kind, self.trust_remote_code, self.device)
        return self._loaded[key]


@dataclass
class Context:
    """What a strategy needs besides its own config."""

    labels: list[str]
    prompt: PromptConfig | None = None
    seed: int = 0
    backbones: BackboneCache = field(default_factory=BackboneCache)
    progress: Callable[[str, int], Callable[[int], None]] | None = None  # (desc, total) -> advance(n)
    run: RunOptions = field(
        default_factory=RunOptions
    )  # checkpoints, resume, precision, trackers of training
    no_relation_label: str | None = None  # task relation: the label left out of micro/macro-F1
    # the grid's ranking metric where a cell's own choices must follow it (plan.choice_metric): "macro_f1"
    # when imbalanced labels rank by it; accuracy otherwise
    choose_by: str = "accuracy"
    # the labelled data's label shares a cross-validated cell weights its held-out choices to (compare.prior)
    prior: dict[str, float] | None = None
    # whether a label cell chooses a decision correction on its held-out predictions (compare.correction)
    correct: bool = True

    def template(self) -> Template:
        if self.prompt is None:
            raise TaskfitError(
                "this strategy needs a prompt: add a 'prompt:' block with a template and verbalizer"
            )
        return Template.parse(self.prompt.template)

    def verbalizer(self) -> Verbalizer:
        if self.prompt is None:
            raise TaskfitError(
                "this strategy needs a prompt: add a 'prompt:' block with a template and verbalizer"
            )
        return Verbalizer.build(self.prompt.verbalizer, self.labels)

    def advance(self, desc: str, total: int) -> Callable[[int], None]:
        return self.progress(desc, total) if self.progress else (lambda n: None)


P = TypeVar("P", covariant=True)  # what predict returns
ExtraLoss = Callable[[list], "torch.Tensor | None"]  # (batch) -> a loss term, or None for none


@runtime_checkable
class Strategy(Protocol[P]):
    """fit on (train, dev), predict, count what it trains, save what it trained and load it back."""

    config: StrategyBase
    log: list[dict]  # one record per epoch/evaluation, written to the run's train_log.jsonl

    def fit(self, train: list[Example], dev: list[Example]) -> None: ...

    def predict(self, examples: list[Example]) -> P: ...

    def trainable_parameters(self) -> tuple[int, int]:
        """(trained parameters, all parameters)."""
        ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path, config: Any, ctx: Context, saved: dict) -> Strategy[P]:
        """Rebuild from a saved folder (``saved``: its strategy.json)."""
        ...


@runtime_checkable
class Diagnoses(Protocol):
    def diagnostics(self, predicted: list[str], gold: list[str] | None = None) -> dict: ...


@runtime_checkable
class ScoresPerplexity(Protocol):
    def perplexity(self, examples: list[Example]) -> dict[str, float]: ...


@runtime_checkable
class DevScored(Protocol):
    dev_metric: str  # as logged, e.g. dev_accuracy; higher is better

    def dev_score(self, examples: list[Example]) -> float: ...


@runtime_checkable
class TakesExtraLoss(Protocol):
    extra_loss: ExtraLoss | None


@runtime_checkable
class CountsParsing(Protocol):
    counts: dict[str, int]


@runtime_checkable
class ReportsAlignment(Protocol):
    stats: dict[str, int]


def write_strategy_file(
    directory: Path, config: StrategyBase, ctx: Context, extra: dict | None = None
) -> None:
    """Everything needed to rebuild a strategy besides its weights."""
    from taskfit.io import write_json_atomic
    from taskfit.training.precision import resolve_precision

    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "strategy": config.model_dump(mode="json"),
        "labels": ctx.labels,
        "prompt": ctx.prompt.model_dump(mode="json") if ctx.prompt else None,
        "mixed_precision": resolve_precision(ctx.run.mixed_precision, resolve_device(ctx.backbones.device)),
        **(extra or {}),
    }
    write_json_atomic(directory / STRATEGY_FILE, payload)


DEMOS_FILE = "demonstrations.jsonl"  # the demonstrations a prompting strategy shows, saved with its run


def save_demonstrations(directory: Path, examples: list) -> None:
    """A prompting strategy's demonstration pool, one ``dataclasses.asdict`` object per line (none: no file)."""
    from dataclasses import asdict

    from taskfit.io import write_jsonl_atomic

    if examples:
        directory.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(directory / DEMOS_FILE, [asdict(e) for e in examples])


def read_demonstrations(directory: Path, make: Callable[[dict], Any] | None = None) -> list:
    """What ``save_demonstrations`` wrote ([] when nothing was); ``make`` builds one example from its dict
    (default: an ``Example``, its history turns as tuples)."""
    path = directory / DEMOS_FILE
    if not path.exists():
        return []

    def example(d: dict) -> Example:
        return Example(**{**d, "history": tuple(tuple(turn) for turn in d.get("history") or ())})

    lines = path.read_text(encoding="utf-8").splitlines()
    return [(make or example)(json.loads(line)) for line in lines if line.strip()]


def read_strategy_file(directory: Path) -> dict:
    path = directory / STRATEGY_FILE
    if not path.exists():
        raise TaskfitError(f"{directory} is not a saved strategy: {STRATEGY_FILE} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def probs_to_predictions(scores: torch.Tensor, labels: list[str]) -> Predictions:
    probs = torch.softmax(scores.float(), dim=-1)
    return Predictions([labels[i] for i in probs.argmax(-1).tolist()], probs, list(labels))


def count_parameters(module: torch.nn.Module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def balanced_class_weights(examples: list, labels: list[str]) -> torch.Tensor:
    """Per label, n / (labels present x its count) (scikit-learn's ``class_weight='balanced'``, with the
    labels absent from ``examples`` at 1: they have no examples to weigh); all 1 on equal shares."""
    counts = {lab: 0 for lab in labels}
    for e in examples:
        counts[e.label] = counts.get(e.label, 0) + 1
    present = [lab for lab in labels if counts[lab]]
    n = sum(counts[lab] for lab in present)
    return torch.tensor(
        [n / (len(present) * counts[lab]) if counts[lab] else 1.0 for lab in labels], dtype=torch.float
    )
