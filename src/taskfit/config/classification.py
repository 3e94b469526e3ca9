"""Strategy configs of task: classification (the names a classification config's ``strategies:`` take)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from taskfit.config.augment import AdversarialConfig, AugmentConfig, adversarial_field, augment_field
from taskfit.config.base import (
    LOOP_OPTIONS,
    StrategyBase,
    TrainingOptions,
    class_weight_field,
    option,
    training_options,
)
from taskfit.config.prompt import (
    CALIBRATION_HELP,
    ENCODER_MAX_LENGTH_HELP,
    PROMPT_ENSEMBLE_HELP,
    PROMPT_MAX_LENGTH_HELP,
    CalibratedPrompting,
    Calibration,
    PromptSearchConfig,
    check_prompt_ensemble,
)


class ZeroShotConfig(CalibratedPrompting, StrategyBase):
    """Causal LM: score each label's words at the answer slot. Encoder: text vs label-description similarity.

    Default ``calibration: none``: measured on smollm2 (BENCHMARKS.md, issue 11) contextual calibration helps
    zero-shot on trec (+0.056) and tweets (+0.005) and hurts it on mr (-0.060); no one setting wins."""

    name: Literal["zero-shot"]
    prompt_search: PromptSearchConfig | None = Field(None, description="try several prompts on dev")
    calibration: Calibration = Field("none", description=CALIBRATION_HELP)
    scoring: Literal["sum", "mean"] = Field(
        "sum", description="sum or per-token mean log-probability of a word"
    )
    batch_size: int = Field(16, ge=1)
    max_length: int | None = Field(None, ge=8, description=PROMPT_MAX_LENGTH_HELP + ENCODER_MAX_LENGTH_HELP)
    prompt_ensemble: int | None = Field(None, ge=2, description=PROMPT_ENSEMBLE_HELP)

    @model_validator(mode="after")
    def _prompt_ensemble_needs_a_search(self):
        return check_prompt_ensemble(self)


class InContextConfig(CalibratedPrompting, StrategyBase):
    """Demonstrations in the context, then label-word scoring.

    Default ``calibration: auto``: contextual or none, whichever scores better on the few-shot dev set (none
    without one, and with ``selection: similar``, which has no shared prefix to calibrate). Measured on
    smollm2 (BENCHMARKS.md, issue 11), contextual calibration lifts in-context with one demonstration per
    class (mr +0.054, tweets-sentiment +0.017, trec -0.005) but costs 0.11 on mr with four per class
    interleaved: no fixed setting wins, so each run picks on its own dev set."""

    name: Literal["in-context"]
    prompt_search: PromptSearchConfig | None = Field(None, description="try several prompts on dev")
    calibration: Calibration | Literal["auto"] = Field(
        "auto",
        description=CALIBRATION_HELP + "; auto (default): contextual or none, whichever is better on dev",
    )
    demos_per_class: int = Field(2, ge=0, description="demonstrations per class placed before each query")
    selection: Literal["random", "balanced", "similar"] = "balanced"
    demo_order: Literal["interleaved", "shuffled"] = Field(
        "interleaved",
        description="balanced: rounds of one demonstration per label (no class blocks) or one seeded shuffle",
    )
    embedder: str = Field("minilm", description="sentence encoder for selection: similar")
    separator: str = "\n\n"
    reuse_prefix_cache: bool = Field(True, description="encode a shared demonstration prefix once (KV cache)")
    order_ensemble: int = Field(
        1,
        ge=1,
        description="average label probabilities over this many demonstration orders (the chosen one, then "
        "seeded permutations); the per-order accuracy spread is reported",
    )
    prompt_ensemble: int | None = Field(None, ge=2, description=PROMPT_ENSEMBLE_HELP)
    demo_sets: int | None = Field(
        None,
        ge=2,
        description="average label probabilities over this many demonstration sets, each drawn like the first "
        "from labelled examples no other set shows (while the labels allow): which few examples were drawn "
        "is what makes in-context results swing from sample to sample; costs one pass per set",
    )

    @model_validator(mode="after")
    def _prompt_ensemble_needs_a_search(self):
        return check_prompt_ensemble(self)

    @model_validator(mode="before")
    @classmethod
    def _no_default_calibration_per_query(cls, raw: Any) -> Any:
        """selection: similar gives each query its own prefix: the calibration default does not apply."""
        if isinstance(raw, dict) and raw.get("selection") == "similar" and "calibration" not in raw:
            raw = {**raw, "calibration": "none"}
        return raw

    def holds_one_prefix(self) -> bool:
        # selection: similar draws each query's demonstrations from the whole pool; a prompt search
        # chooses on held-out examples of its own
        return self.selection != "similar" and self.prompt_search is None

    def demonstrations_per_class(self) -> int:
        return self.demos_per_class

    def variant(self) -> str:
        orders = f"+{self.order_ensemble}-orders" if self.order_ensemble > 1 else ""
        sets = f"+{self.demo_sets}-demo-sets" if self.demo_sets else ""
        return super().variant() + orders + sets

    @model_validator(mode="after")
    def _calibration_needs_one_prefix(self) -> InContextConfig:
        if self.order_ensemble > 1 and self.selection == "similar":
            raise ValueError(
                "order_ensemble permutes one shared demonstration set; use selection: balanced or random"
            )
        if self.demo_sets and self.selection == "similar":
            raise ValueError(
                "demo_sets averages shared demonstration prefixes; selection: similar gives each query its "
                "own: use selection: balanced or random, or drop demo_sets"
            )
        if self.calibration != "none" and self.selection == "similar":
            raise ValueError(
                "calibration needs one demonstration prefix for all queries; with selection: similar each "
                "query has its own. Use selection: balanced or random, or calibration: none"
            )
        return self

    scoring: Literal["sum", "mean"] = "sum"
    batch_size: int = Field(16, ge=1)
    max_length: int | None = Field(None, ge=8, description=PROMPT_MAX_LENGTH_HELP)


class EncoderTrainingConfig(TrainingOptions, StrategyBase):
    """What every encoder + classification-head strategy shares: the training loop's settings."""

    backbone: str = "minilm"
    class_weight: Literal["balanced", "none"] = class_weight_field()
    augment: AugmentConfig | None = augment_field()

    def augmentation(self) -> AugmentConfig | None:
        return self.augment

    adversarial: AdversarialConfig | None = adversarial_field()


class HeadFinetuneConfig(EncoderTrainingConfig):
    """Encoder + linear head on mean-pooled states, full fine-tuning with AdamW."""

    name: Literal["head-finetune"]
    freeze_embeddings: bool = Field(
        True,
        description="keep the embedding layer (words, positions, its norm) fixed; measured at K=16 over 5 "
        "seeds: the same accuracy as training it on mr and trec, 1.20-1.34x faster (BENCHMARKS.md, issue "
        "22); false trains it too",
    )
    freeze_layers: int = Field(0, ge=0, description="freeze the bottom N encoder layers")
    freeze_encoder: bool = Field(False, description="train the head only (a linear probe)")


class ContrastiveConfig(
    training_options(
        "lr",
        "epochs",
        "batch_size",
        "warmup_ratio",
        "max_grad_norm",
        "max_length",
        lr=2e-5,
        epochs=1,
        batch_size=16,
    ),
    StrategyBase,
):
    """SetFit-style: contrastive tuning of the sentence encoder on pairs from the K shots, then logistic regression."""

    name: Literal["contrastive"]
    backbone: str = "minilm"
    num_iterations: int = Field(20, ge=1, description="positive + negative pair per example, this many times")
    class_weight: Literal["balanced", "none"] = class_weight_field()
    head_c: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic-regression head")
    augment: AugmentConfig | None = augment_field()

    def augmentation(self) -> AugmentConfig | None:
        return self.augment


class PromptFinetuneConfig(
    CalibratedPrompting,
    training_options(
        *LOOP_OPTIONS,
        "label_smoothing",
        lr=Field(1e-3, description="1e-3 suits lora; use ~1e-5 for full"),
        epochs=10,
        weight_decay=0.0,
        patience=4,
    ),
    StrategyBase,
):
    """PET / LM-BFF: fine-tune a causal LM through its template and verbalizer (loss over label-word scores)."""

    name: Literal["prompt-finetune"]
    prompt_search: PromptSearchConfig | None = Field(None, description="try several prompts on dev")
    calibration: Literal["none", "contextual", "dev"] = Field(
        "none",
        description="after training: contextual (content-free inputs) or dev (per-label offsets fitted on the "
        "few-shot dev set)",
    )
    tuning: Literal["lora", "full"] = "lora"
    class_weight: Literal["balanced", "none"] = class_weight_field()
    demos_per_class: int = Field(0, ge=0, description="demonstrations in the context (LM-BFF); 0 = none")
    scoring: Literal["sum", "mean"] = "sum"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Literal["attention", "all-linear"] | list[str] = "attention"
    augment: AugmentConfig | None = augment_field()

    def augmentation(self) -> AugmentConfig | None:
        return self.augment

    adversarial: AdversarialConfig | None = adversarial_field()


TargetModules = Literal["attention", "all-linear", "default"] | list[str]


class LoraStrategyConfig(EncoderTrainingConfig):
    """LoRA through peft. Few-shot default lr 5e-3: at 5e-4 the loss barely moves with 16 shots per class."""

    name: Literal["lora"]
    lr: float = option("lr", 5e-3)
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: TargetModules = Field("attention", description="attention, all-linear, or module names")


class IA3StrategyConfig(EncoderTrainingConfig):
    """(IA)^3 through peft: learned rescaling vectors on keys, values and feed-forward activations."""

    name: Literal["ia3"]
    lr: float = option("lr", 1e-2)
    target_modules: TargetModules = Field(
        "default", description="default (peft's per-architecture choice) or names"
    )
    feedforward_modules: list[str] | None = None


class PromptTuningStrategyConfig(EncoderTrainingConfig):
    """Soft prompt through peft: trainable virtual-token embeddings before the input; the encoder is frozen."""

    name: Literal["prompt-tuning"]
    lr: float = option("lr", 3e-2, description="soft prompts need a large learning rate")
    num_virtual_tokens: int = Field(20, ge=1)
    init: Literal["sample-vocab", "random"] = Field(
        "sample-vocab", description="start from embeddings of random vocabulary tokens, or from noise"
    )


class PrefixTuningStrategyConfig(EncoderTrainingConfig):
    """Prefix tuning through peft: trainable keys/values prepended in every attention layer."""

    name: Literal["prefix-tuning"]
    lr: float = option("lr", 1e-2)
    num_virtual_tokens: int = Field(20, ge=1)
    prefix_projection: bool = Field(False, description="reparametrise the prefix through a 2-layer MLP")
    projection_size: int = Field(512, ge=1, description="hidden size of that MLP")


class BitFitConfig(EncoderTrainingConfig):
    """Train only the bias terms (and the head)."""

    name: Literal["bitfit"]
    lr: float = option("lr", 5e-3)


class AdapterStrategyConfig(EncoderTrainingConfig):
    """Houlsby bottleneck adapters after the attention output and the feed-forward output of every layer."""

    name: Literal["adapter"]
    lr: float = option("lr", 1e-3)
    reduction_factor: int = Field(16, ge=1, description="hidden size / bottleneck size")
    train_layer_norm: bool = Field(True, description="also train LayerNorms, as Houlsby et al. do")
    adapter_modules: list[str] | None = Field(
        None, description="modules whose output gets an adapter; default per architecture"
    )
