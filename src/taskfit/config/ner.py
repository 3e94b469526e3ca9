"""Strategy configs of task: ner (one tag per word). The trained strategies share the classification ones'
settings plus the tag scheme, sub-token labelling and the window stride for long sentences."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from taskfit.config.base import StrategyBase, Strict, option
from taskfit.config.classification import (
    AdapterStrategyConfig,
    BitFitConfig,
    HeadFinetuneConfig,
    LoraStrategyConfig,
)


class NerOptions(Strict):
    """What every trained NER strategy adds: how tags are encoded and how sentences meet the model's limit."""

    class_weight: Literal["none"] = Field("none", description="sentence classification only (not tags)")

    scheme: Literal["bio", "iobes", "io"] = Field(
        "bio", description="tags the model predicts (the data may use any; it is converted)"
    )
    label_all_subtokens: bool = Field(
        False,
        description="train on every sub-token of a word (continuations as I-); default: the first only, the "
        "rest ignored (-100)",
    )
    stride: int = Field(
        32,
        ge=0,
        description="sentences longer than max_length are split into windows overlapping by this "
        "many tokens, and merged back (never truncated)",
    )
    label_token: Literal["auto", "first", "last"] = Field(
        "auto",
        description="which token of a word carries its tag: first, last, or auto (last for causal LMs, whose "
        "first byte-level token of a Chinese character has not seen the whole character; first for encoders)",
    )
    # Small-K defaults (100 sentences = ~15 optimiser steps an epoch at batch 8): the tag layer starts from
    # scratch against ~94% O tags, so it gets a higher learning rate than a classification head; early
    # stopping on dev entity F1 ends a run sooner than classification's patience of 8.
    head_lr: float = option(
        "head_lr",
        5e-3,
        description="learning rate of the tag layer (from scratch; 2e-3 barely leaves all-O at K=100)",
    )
    epochs: int = option("epochs", 20, description="epochs at most (early stopping on dev entity F1)")
    patience: int = option("patience", 4, description="epochs without a better dev entity F1 before stopping")
    max_length: int = option("max_length", 128)


class NerHeadFinetuneConfig(NerOptions, HeadFinetuneConfig):
    """Backbone + linear tag classifier on every token's hidden state, full fine-tuning."""


class NerLoraConfig(NerOptions, LoraStrategyConfig):
    """LoRA on the backbone, a fully trained tag classifier."""

    lr: float = option(
        "lr",
        5e-3,
        description="learning rate of the LoRA matrices (5e-3, as classification LoRA; 2e-3 "
        "left smollm2 all-O at K=100)",
    )


class NerBitFitConfig(NerOptions, BitFitConfig):
    """Bias terms and the tag classifier train."""


class NerAdapterConfig(NerOptions, AdapterStrategyConfig):
    """Houlsby adapters and the tag classifier train."""


class NerPromptingConfig(StrategyBase):
    """A causal LM asked for the entities as 'TYPE: text' lines, zero-shot or with K demonstrations; the
    answer is parsed back into character spans (unparseable lines are counted, not fatal)."""

    backbone: str = "smollm2"
    chat_template: Literal["auto", "on", "off"] = Field(
        "auto", description="render through the tokenizer's chat template (auto: when it has one)"
    )
    instruction: str | None = Field(
        None,
        description="the task description before the sentence; default: list the entities (types from the "
        "data) one per line as 'TYPE: text', or 'none'",
    )
    type_names: dict[str, str] = Field(
        default_factory=dict,
        description="type -> word shown to the LM (e.g. PER: person); the answer may use either",
    )
    max_length: int = Field(1024, ge=16, description="prompt tokens; longer prompts lose their start")
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(8, ge=1, description="prompts generated together")


class NerZeroShotConfig(NerPromptingConfig):
    name: Literal["zero-shot"]


class NerInContextConfig(NerPromptingConfig):
    name: Literal["in-context"]
    demos: int = Field(
        4, ge=1, description="training sentences shown (with their entities) before each input"
    )
    selection: Literal["random", "first"] = Field(
        "random", description="random: a fresh seeded draw per input; first: the same demos for all"
    )
