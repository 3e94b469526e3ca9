"""Strategies behind the ``Strategy`` interface; which class implements a (task, name) is the registry's
(``taskfit.registry.REGISTRY``). A new one is a module plus one registry entry."""

from __future__ import annotations

from pathlib import Path

from taskfit.registry import REGISTRY
from taskfit.strategies.base import (
    BackboneCache,
    Context,
    Predictions,
    Strategy,
    read_strategy_file,
)
from taskfit.strategies.corrected import CORRECTION_KEY, Corrected
from taskfit.strategies.generation import Generations


def build_strategy(config, ctx: Context) -> Strategy:
    return REGISTRY.entry_of(config).load()(config, ctx)


def load_strategy(directory: str | Path, backbones: BackboneCache | None = None) -> Strategy:
    """Rebuild a saved strategy from its folder (a run cell's ``model/``)."""
    from taskfit.config import PromptConfig

    directory = Path(directory)
    saved = read_strategy_file(directory)
    if saved.get("members"):  # several saved models averaged (a final/ of rows the grid could not tell apart)
        from taskfit.strategies.averaged import load_averaged

        backbones = backbones or BackboneCache()
        return load_averaged(directory, saved, lambda folder: load_strategy(folder, backbones))
    entry = REGISTRY.get(saved.get("task", "classification"), saved["strategy"]["name"])
    if "label_token" in entry.config.model_fields and "label_token" not in saved["strategy"]:
        # a NER tagger saved before label_token existed read every word off its first token
        saved["strategy"]["label_token"] = "first"
    config = entry.config.model_validate(saved["strategy"])
    prompt = PromptConfig.model_validate(saved["prompt"]) if saved.get("prompt") else None
    ctx = Context(labels=saved["labels"], prompt=prompt, backbones=backbones or BackboneCache())
    strategy = entry.load().load(directory, config, ctx, saved)
    if saved.get(CORRECTION_KEY):  # a decision correction chosen on held-out predictions (issue 36)
        return Corrected(strategy, saved[CORRECTION_KEY])
    return strategy


__all__ = [
    "BackboneCache",
    "Context",
    "Generations",
    "Predictions",
    "Strategy",
    "build_strategy",
    "load_strategy",
    "read_strategy_file",
]
