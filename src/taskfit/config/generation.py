"""Strategy configs of task: generation (a causal LM writes the target text). Same names as their
classification counterparts where the idea is the same; the task decides which config a name means."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from taskfit.config.augment import AdversarialConfig, adversarial_field
from taskfit.config.base import LOOP_OPTIONS, StrategyBase, Strict, option, training_options


class DecodingConfig(Strict):
    """How text is generated at test time (and by the served model)."""

    method: Literal["greedy", "beam", "sample"] = "greedy"
    max_new_tokens: int = Field(48, ge=1)
    num_beams: int = Field(4, ge=2, description="beam: beams kept")
    temperature: float = Field(0.7, gt=0, description="sample: softmax temperature")
    top_p: float = Field(0.9, gt=0, le=1, description="sample: nucleus probability mass")
    stop: list[str] = Field(default_factory=list, description="cut the output at the first of these strings")
    repetition_penalty: float = Field(1.0, ge=1.0)
    batch_size: int = Field(8, ge=1, description="prompts generated together (left padding)")


class GenerationBase(StrategyBase):
    backbone: str = "smollm2"
    chat_template: Literal["auto", "on", "off"] = Field(
        "auto", description="render through the tokenizer's chat template (auto: when it has one)"
    )
    max_length: int = Field(256, ge=16, description="prompt + target tokens; longer prompts lose their start")
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    eval_batch_size: int = Field(8, ge=1, description="batch size of perplexity evaluation")


class GenerationZeroShotConfig(GenerationBase):
    """The untouched model, prompted with the template alone: the 'before' of every before-vs-after."""

    name: Literal["zero-shot"]


class GenerationInContextConfig(GenerationBase):
    """Few-shot prompting: training pairs shown as earlier turns (chat) or earlier blocks (plain)."""

    name: Literal["in-context"]
    demos: int = Field(2, ge=1, description="demonstrations before each input")
    selection: Literal["random", "first"] = Field(
        "random", description="random: a fresh seeded draw per input; first: the same demos for all"
    )
    separator: str = "\n\n"


class SupervisedFinetuneBase(
    training_options(
        *LOOP_OPTIONS,
        lr=1e-3,
        epochs=3,
        weight_decay=0.0,
        patience=Field(2, description="epochs without a lower dev loss before stopping"),
    ),
    GenerationBase,
):
    """Supervised fine-tuning: next-token loss on the target tokens only (the prompt is masked with -100)."""

    grad_accumulation: int = Field(1, ge=1, description="batches per optimiser step")
    batching: Literal["length-grouped", "packed", "random"] = Field(
        "length-grouped",
        description="length-grouped: similar lengths share a batch (less padding); packed: several examples "
        "in one row with attention kept inside each example",
    )
    adversarial: AdversarialConfig | None = adversarial_field()


class GenerationFullConfig(SupervisedFinetuneBase):
    """Every weight trained. Small learning rate: the model already writes fluent text."""

    name: Literal["full-finetune"]
    lr: float = option("lr", 5e-5)


class GenerationLoraConfig(SupervisedFinetuneBase):
    """LoRA through peft on the attention (or all linear) projections."""

    name: Literal["lora"]
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Literal["attention", "all-linear"] | list[str] = "all-linear"


class GenerationPromptTuningConfig(SupervisedFinetuneBase):
    """Soft prompt through peft: trained virtual-token embeddings before the input; the LM is frozen."""

    name: Literal["prompt-tuning"]
    lr: float = option("lr", 3e-2)
    num_virtual_tokens: int = Field(16, ge=1)
    init_text: str | None = Field(
        None, description="start the soft prompt from this text's embeddings (default: random vocabulary)"
    )

    @model_validator(mode="after")
    def _not_packed(self) -> GenerationPromptTuningConfig:
        if self.batching == "packed":
            raise ValueError(
                "batching: packed needs position ids and a block mask, which peft's soft prompt does not pass "
                "through; use batching: length-grouped"
            )
        return self
