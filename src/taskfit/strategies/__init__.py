"""Strategies: one module each behind the ``Strategy`` interface. A new one is a module plus one line here."""

from __future__ import annotations

from pathlib import Path

from taskfit.config import strategy_configs
from taskfit.strategies.base import BackboneCache, Context, Predictions, Strategy, read_strategy_file
from taskfit.strategies.contrastive import Contrastive
from taskfit.strategies.generation import GenerationFewShot, GenerationPrompting, Generations
from taskfit.strategies.head_finetune import HeadFinetune
from taskfit.strategies.in_context import InContext
from taskfit.strategies.ner import NerAdapter, NerBitFit, NerHeadFinetune, NerLora
from taskfit.strategies.ner_prompting import NerFewShot, NerPrompting
from taskfit.strategies.peft_encoder import IA3, Adapter, BitFit, Lora, PrefixTuning, PromptTuning
from taskfit.strategies.prompt_finetune import PromptFinetune
from taskfit.strategies.supervised_finetune import SupervisedFinetune
from taskfit.strategies.zero_shot import ZeroShot

STRATEGIES = {
    "zero-shot": ZeroShot,
    "in-context": InContext,
    "head-finetune": HeadFinetune,
    "lora": Lora,
    "ia3": IA3,
    "prompt-tuning": PromptTuning,
    "prefix-tuning": PrefixTuning,
    "bitfit": BitFit,
    "adapter": Adapter,
    "contrastive": Contrastive,
    "prompt-finetune": PromptFinetune,
}
# task: generation. The same name can mean another strategy than in classification (lora, zero-shot, ...).
GENERATION_STRATEGIES = {
    "zero-shot": GenerationPrompting,
    "in-context": GenerationFewShot,
    "full-finetune": SupervisedFinetune,
    "lora": SupervisedFinetune,
    "prompt-tuning": SupervisedFinetune,
}

# task: ner. Taggers read every token's hidden state (encoder or causal LM); the prompted ones generate.
NER_STRATEGIES = {
    "head-finetune": NerHeadFinetune,
    "lora": NerLora,
    "bitfit": NerBitFit,
    "adapter": NerAdapter,
    "zero-shot": NerPrompting,
    "in-context": NerFewShot,
}


def strategies_for(task: str = "classification") -> dict:
    if task == "relation":  # imported here: the task modules build on the strategy modules
        from taskfit.tasks.relation import RELATION_STRATEGIES

        return RELATION_STRATEGIES
    if task == "extractive-qa":
        from taskfit.tasks.extractive_qa import QA_STRATEGIES

        return QA_STRATEGIES
    if task == "ner":
        return NER_STRATEGIES
    return GENERATION_STRATEGIES if task == "generation" else STRATEGIES


def task_of(config) -> str:
    from taskfit.config import ExtractiveQAOptions, GenerationBase, NerTask, RelationOptions

    if isinstance(config, NerTask):
        return "ner"
    if isinstance(config, RelationOptions):
        return "relation"
    if isinstance(config, ExtractiveQAOptions):
        return "extractive-qa"
    return "generation" if isinstance(config, GenerationBase) else "classification"


def needed_kind(config) -> str | None:
    """The backbone kind a strategy config needs (None: either)."""
    task = task_of(config)
    if task in ("relation", "extractive-qa"):  # span tasks read encoder token states
        return "encoder"
    if task == "ner":
        return NER_NEEDS_KIND.get(config.name)
    return "causal-lm" if task == "generation" else NEEDS_KIND.get(config.name)


# causal-LM-only and encoder-only strategies; used to reject a grid cell before anything trains.
# head-finetune, lora, ia3, prompt-tuning and prefix-tuning take either: a causal LM becomes a classifier on
# its last token's hidden state. bitfit needs bias terms (Llama-style LMs have none); adapters and the
# SetFit recipe are defined for sentence encoders.
NEEDS_KIND = {
    "in-context": "causal-lm",
    "bitfit": "encoder",
    "adapter": "encoder",
    "contrastive": "encoder",
    "prompt-finetune": "causal-lm",
}

NER_NEEDS_KIND = {
    "zero-shot": "causal-lm",
    "in-context": "causal-lm",
    "bitfit": "encoder",
    "adapter": "encoder",
}


def build_strategy(config, ctx: Context) -> Strategy:
    return strategies_for(task_of(config))[config.name](config, ctx)


def load_strategy(directory: str | Path, backbones: BackboneCache | None = None) -> Strategy:
    """Rebuild a saved strategy from its folder (a run cell's ``model/``)."""
    from taskfit.config import PromptConfig

    directory = Path(directory)
    saved = read_strategy_file(directory)
    task = saved.get("task", "classification")
    config_class = strategy_configs(task)[saved["strategy"]["name"]]
    if "label_token" in config_class.model_fields and "label_token" not in saved["strategy"]:
        # a NER tagger saved before label_token existed read every word off its first token
        saved["strategy"]["label_token"] = "first"
    config = config_class.model_validate(saved["strategy"])
    prompt = PromptConfig.model_validate(saved["prompt"]) if saved.get("prompt") else None
    ctx = Context(labels=saved["labels"], prompt=prompt, backbones=backbones or BackboneCache())
    return strategies_for(task)[config.name].load(directory, config, ctx, saved)


__all__ = [
    "GENERATION_STRATEGIES",
    "NER_STRATEGIES",
    "STRATEGIES",
    "Generations",
    "BackboneCache",
    "Context",
    "Predictions",
    "Strategy",
    "build_strategy",
    "load_strategy",
]
