"""Experiment configs: typed, validated, and strict. An unknown key is an error naming the closest valid one.

A config file holds only what differs from the defaults (see ``examples/``). ``--set a.b=value`` edits
a loaded config before validation, with the same checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from taskfit.errors import TaskfitError, did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ColumnsConfig(Strict):
    text: str = "text"
    label: str = "label"
    text_pair: str | None = None
    target: str = Field("target", description="generation: the output text column")
    messages: str | None = Field(
        None,
        description="generation: a column of chat messages [{role, content}, ...]; the last (assistant) "
        "message is the target",
    )
    # task: ner (JSONL): tokens + tags, or text + character-offset entities
    tokens: str = Field("tokens", description="ner: the column of words (a list)")
    tags: str = Field("tags", description="ner: the column of tags, one per word (BIO, IOBES or IO)")
    entities: str = Field(
        "entities", description="ner: the column of [{start, end, type}] character offsets into text"
    )


Shots = Annotated[int, Field(ge=1)] | Literal["all"] | None


class DataConfig(Strict):
    """Where examples come from and how many of them a run sees."""

    dataset: str | None = Field(None, description="built-in dataset name (taskfit datasets lists them)")
    train: str | None = Field(
        None, description="CSV/TSV/JSONL file, saved HF dataset folder, or hub name[:split]"
    )
    dev: str | None = None
    test: str | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "hf", "conll"] = Field(
        "auto", description="conll: one 'token tag' per line, blank line between sentences (task: ner)"
    )
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    labels: list[str] | None = Field(None, description="label order; default: sorted labels of train")
    shots: Shots | list[Shots] = Field(
        16,
        description="K examples per class drawn from train (generation: K pairs in all; ner: K sentences in "
        "all; all or null = every example); a list is a grid",
    )
    dev_shots: int | None = Field(None, ge=1, description="K per class for the dev set; default = shots")
    test_limit: int | None = Field(
        None, ge=1, description="evaluate on a fixed subset of this many test examples"
    )
    split_seed: int = Field(0, description="seed for carving dev/test out of train when they are not given")
    dedupe: bool = Field(
        False,
        description="drop from train (and dev) texts that also occur in a later split (never from test)",
    )
    no_relation_label: str | None = Field(
        None,
        description="task relation: the label meaning 'no relation' (e.g. no_relation, Other), left out of "
        "micro- and macro-F1 as relation-extraction papers score",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.dataset is None) == (self.train is None):
            raise ValueError("set exactly one of data.dataset (built-in) or data.train (your file)")
        if isinstance(self.shots, list):
            if not self.shots:
                raise ValueError("data.shots: an empty list; give at least one K (or all)")
            if len(set(map(str, self.shots))) != len(self.shots):
                raise ValueError(f"data.shots lists a K twice: {self.shots}")
        return self

    def shot_grid(self) -> list[int | None]:
        """The K values of the grid, smallest first; None means all of train."""
        values = self.shots if isinstance(self.shots, list) else [self.shots]
        ks = [None if v in (None, "all") else int(v) for v in values]
        return sorted(ks, key=lambda k: float("inf") if k is None else k)

    def for_shots(self, k: int | None) -> DataConfig:
        """This data config with one K (what a grid cell sees)."""
        return self.model_copy(update={"shots": k})

    @property
    def k(self) -> int | None:
        """The single K of a one-cell data config (None = all of train)."""
        if isinstance(self.shots, list):
            raise ValueError("data.shots is a grid; take one value with for_shots()")
        return None if self.shots in (None, "all") else int(self.shots)  # type: ignore[arg-type]


def _as_word_lists(value: Any) -> Any:
    """A verbalizer may give one word as a string: {pos: " good"} means {pos: [" good"]}."""
    if isinstance(value, dict):
        return {str(k): ([v] if isinstance(v, str) else v) for k, v in value.items()}
    return value


class PromptConfig(Strict):
    template: str = Field(..., description='e.g. "Review: {text}\\nSentiment:{answer}"')
    verbalizer: dict[str, list[str]] = Field(
        default_factory=dict,
        description="label -> words scored at {answer}; inserted verbatim (mind the leading space)",
    )
    label_descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="label -> description, for encoder zero-shot by embedding similarity",
    )

    @field_validator("verbalizer", mode="before")
    @classmethod
    def _words_as_lists(cls, value: Any) -> Any:
        return _as_word_lists(value)


class RangeSpace(Strict):
    """A numeric search range: integers if low and high are both integers, floats otherwise."""

    low: int | float
    high: int | float
    log: bool = Field(False, description="sample on a log scale (learning rates)")

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpace:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        return self

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


SearchSpace = RangeSpace | Annotated[list[Any], Field(min_length=1)]
NOT_SEARCHABLE = ("id", "name", "backbone", "search", "trials")


class StrategyBase(Strict):
    id: str | None = Field(None, description="row name in results; default: the strategy name")
    backbone: str = Field(
        "smollm2", description="minilm, smollm2, a Hugging Face model id, or a local folder"
    )
    search: dict[str, SearchSpace] | None = Field(
        None,
        description="hyperparameters to tune on the few-shot dev set with Optuna: "
        "{lr: {low: 1e-4, high: 1e-2, log: true}, r: [4, 8, 16]}",
    )
    trials: int = Field(8, ge=1, description="search budget: trials per grid cell")

    @field_validator("search", mode="before")
    @classmethod
    def _parse_spaces(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        parsed = {}
        for key, space in value.items():
            if isinstance(space, dict):
                try:
                    space = RangeSpace.model_validate(space)
                except ValidationError as err:
                    raise ValueError(
                        f"search.{key}: {err.errors()[0]['msg'].removeprefix('Value error, ')}"
                    ) from None
            elif not isinstance(space, list) or not space:
                raise ValueError(
                    f"search.{key}: expected a list of values to try or a range {{low: .., high: ..}}, "
                    f"got {space!r}"
                )
            parsed[key] = space
        return parsed

    @property
    def run_id(self) -> str:
        """The row name: ``id``, or the strategy name plus what sets this row apart (``in-context+contextual``)."""
        return self.id or self.name + self.variant()  # type: ignore[attr-defined]

    def variant(self) -> str:
        """Suffix naming settings that make this row a different method, so that rows differ by name."""
        return ""

    @model_validator(mode="after")
    def _searchable(self) -> StrategyBase:
        """Every searched name must be a setting of this strategy and every bound a valid value for it."""
        if not self.search:
            return self
        fields = [f for f in type(self).model_fields if f not in NOT_SEARCHABLE]
        base = self.model_dump(exclude={"search"})
        for key, space in self.search.items():
            if key not in fields:
                raise ValueError(
                    f"search: '{key}' is not a setting of {self.name}."  # type: ignore[attr-defined]
                    + did_you_mean(key, fields)
                    + f" Searchable: {', '.join(fields)}"
                )
            values = [space.low, space.high] if isinstance(space, RangeSpace) else space
            for value in values:
                try:
                    type(self).model_validate({**base, key: value})
                except ValidationError as err:
                    raise ValueError(
                        f"search.{key}: {value!r} is not a valid value ({err.errors()[0]['msg']})"
                    ) from None
        return self


class PromptSearchConfig(Strict):
    """Candidate prompts scored on the few-shot dev set; the best is kept and all are reported."""

    templates: list[str] = Field(default_factory=list, description="alternatives to prompt.template")
    verbalizers: list[dict[str, list[str]]] = Field(
        default_factory=list, description="alternatives to prompt.verbalizer"
    )
    auto_label_words: int = Field(
        0,
        ge=0,
        description="add this many verbalizers found by LM-BFF label-word search on the training shots",
    )

    @field_validator("verbalizers", mode="before")
    @classmethod
    def _words_as_lists(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_as_word_lists(v) for v in value]
        return value


Calibration = Literal["none", "contextual", "pmi"]
CALIBRATION_HELP = "correct the LM's label bias: contextual (content-free inputs) or pmi (domain premise)"


class CalibratedPrompting:
    """Rows of a prompting strategy whose calibration is not its default are named by it: ``zero-shot+pmi``,
    ``in-context+uncalibrated``."""

    def variant(self) -> str:
        calibration = getattr(self, "calibration", "none")
        if calibration == type(self).model_fields["calibration"].default:  # type: ignore[attr-defined]
            return ""
        return "+" + {"dev": "dev-calibrated", "none": "uncalibrated"}.get(calibration, calibration)


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

    @model_validator(mode="before")
    @classmethod
    def _no_default_calibration_per_query(cls, raw: Any) -> Any:
        """selection: similar gives each query its own prefix: the calibration default does not apply."""
        if isinstance(raw, dict) and raw.get("selection") == "similar" and "calibration" not in raw:
            raw = {**raw, "calibration": "none"}
        return raw

    def variant(self) -> str:
        orders = f"+{self.order_ensemble}-orders" if self.order_ensemble > 1 else ""
        return super().variant() + orders

    @model_validator(mode="after")
    def _calibration_needs_one_prefix(self) -> InContextConfig:
        if self.order_ensemble > 1 and self.selection == "similar":
            raise ValueError(
                "order_ensemble permutes one shared demonstration set; use selection: balanced or random"
            )
        if self.calibration != "none" and self.selection == "similar":
            raise ValueError(
                "calibration needs one demonstration prefix for all queries; with selection: similar each "
                "query has its own. Use selection: balanced or random, or calibration: none"
            )
        return self

    scoring: Literal["sum", "mean"] = "sum"
    batch_size: int = Field(16, ge=1)


AugmentOp = Literal[
    "swap", "delete", "insert", "synonym", "char_swap", "char_delete", "char_insert", "paraphrase"
]
WORD_OPS: tuple[str, ...] = ("swap", "delete", "insert", "synonym")
CHAR_OPS: tuple[str, ...] = ("char_swap", "char_delete", "char_insert")


class ParaphraseConfig(Strict):
    """How the ``paraphrase`` operation asks a chat LM to rewrite a training text."""

    backbone: str = Field("smollm2", description="a causal LM with a chat template")
    instruction: str = Field(
        "Rewrite the following text in different words, keeping its meaning and tone. "
        "Reply with the rewritten text only.",
        description="the user turn before the text",
    )
    max_new_tokens: int = Field(64, ge=4, description="longer outputs are cut, then rejected if unfinished")
    temperature: float = Field(
        0.8, ge=0, description="0: greedy (one paraphrase per text); else sampled, seeded by the cell"
    )
    max_length_ratio: float = Field(
        2.0, gt=1, description="reject a paraphrase longer than this many times the original (characters)"
    )
    batch_size: int = Field(8, ge=1)


class AugmentConfig(Strict):
    """Extra training examples made from the K-shot training sample (never dev or test); labels kept."""

    ops: list[AugmentOp] = Field(
        default_factory=lambda: ["swap", "delete", "insert", "synonym"],
        min_length=1,
        description="each augmented copy applies one of these, drawn at random: EDA word operations (swap, "
        "delete, insert a word of the same text, synonym from WordNet), character operations (char_swap, "
        "char_delete, char_insert of a character of the same text; suit Chinese), paraphrase (a chat LM)",
    )
    per_example: int = Field(4, ge=1, description="augmented copies made per training example")
    rate: float = Field(
        0.1, gt=0, le=0.5, description="share of the words (or characters) an operation changes; at least 1"
    )
    seed: int | None = Field(None, description="default: the cell's seed")
    paraphrase: ParaphraseConfig = Field(default_factory=ParaphraseConfig)

    @field_validator("ops")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"augment.ops lists an operation twice: {value}")
        return value


class AdversarialConfig(Strict):
    """Adversarial training on the embedding output: every step adds the gradient of the loss at a perturbed
    input (per example in an L2 ball of radius epsilon) to the clean gradient."""

    method: Literal["fgm", "pgd"] = Field(
        "fgm",
        description="fgm: one step of size epsilon (Miyato et al.); pgd: projected ascent (Madry et al.)",
    )
    epsilon: float = Field(1.0, gt=0, description="L2 radius of the perturbation of one example's embeddings")
    steps: int = Field(3, ge=1, description="pgd: ascent steps (each one more forward/backward pass)")
    alpha: float = Field(0.3, gt=0, description="pgd: size of one ascent step")
    weight: float = Field(1.0, gt=0, description="weight of the adversarial loss added to the clean loss")


def _augment_field() -> Any:
    return Field(None, description="augment the K-shot training sample (see AugmentConfig); null: off")


def _adversarial_field() -> Any:
    return Field(None, description="FGM/PGD adversarial training on the embeddings; null: off")


class EncoderTrainingConfig(StrategyBase):
    """What every encoder + classification-head strategy shares: the training loop's settings."""

    backbone: str = "minilm"
    lr: float = Field(5e-5, gt=0, description="learning rate of the trained encoder parameters")
    head_lr: float = Field(2e-3, gt=0, description="learning rate of the new head (it starts from scratch)")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(8, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the head")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(8, ge=1, description="epochs without dev improvement before stopping")
    pooling: Literal["auto", "mean", "cls", "last"] = Field(
        "auto", description="auto: mean over tokens for encoders, the last token for causal LMs"
    )
    max_length: int = Field(256, ge=8)
    augment: AugmentConfig | None = _augment_field()
    adversarial: AdversarialConfig | None = _adversarial_field()


class HeadFinetuneConfig(EncoderTrainingConfig):
    """Encoder + linear head on mean-pooled states, full fine-tuning with AdamW."""

    name: Literal["head-finetune"]
    freeze_embeddings: bool = False
    freeze_layers: int = Field(0, ge=0, description="freeze the bottom N encoder layers")
    freeze_encoder: bool = Field(False, description="train the head only (a linear probe)")


class ContrastiveConfig(StrategyBase):
    """SetFit-style: contrastive tuning of the sentence encoder on pairs from the K shots, then logistic regression."""

    name: Literal["contrastive"]
    backbone: str = "minilm"
    lr: float = Field(2e-5, gt=0)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    num_iterations: int = Field(20, ge=1, description="positive + negative pair per example, this many times")
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    head_c: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic-regression head")
    max_length: int = Field(256, ge=8)
    augment: AugmentConfig | None = _augment_field()


class PromptFinetuneConfig(CalibratedPrompting, StrategyBase):
    """PET / LM-BFF: fine-tune a causal LM through its template and verbalizer (loss over label-word scores)."""

    name: Literal["prompt-finetune"]
    prompt_search: PromptSearchConfig | None = Field(None, description="try several prompts on dev")
    calibration: Literal["none", "contextual", "dev"] = Field(
        "none",
        description="after training: contextual (content-free inputs) or dev (per-label offsets fitted on the "
        "few-shot dev set)",
    )
    tuning: Literal["lora", "full"] = "lora"
    lr: float = Field(1e-3, gt=0, description="1e-3 suits lora; use ~1e-5 for full")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(4, ge=1)
    demos_per_class: int = Field(0, ge=0, description="demonstrations in the context (LM-BFF); 0 = none")
    scoring: Literal["sum", "mean"] = "sum"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Literal["attention", "all-linear"] | list[str] = "attention"
    augment: AugmentConfig | None = _augment_field()
    adversarial: AdversarialConfig | None = _adversarial_field()


TargetModules = Literal["attention", "all-linear", "default"] | list[str]


class LoraStrategyConfig(EncoderTrainingConfig):
    """LoRA through peft. Few-shot default lr 5e-3: at 5e-4 the loss barely moves with 16 shots per class."""

    name: Literal["lora"]
    lr: float = Field(5e-3, gt=0)
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: TargetModules = Field("attention", description="attention, all-linear, or module names")


class IA3StrategyConfig(EncoderTrainingConfig):
    """(IA)^3 through peft: learned rescaling vectors on keys, values and feed-forward activations."""

    name: Literal["ia3"]
    lr: float = Field(1e-2, gt=0)
    target_modules: TargetModules = Field(
        "default", description="default (peft's per-architecture choice) or names"
    )
    feedforward_modules: list[str] | None = None


class PromptTuningStrategyConfig(EncoderTrainingConfig):
    """Soft prompt through peft: trainable virtual-token embeddings before the input; the encoder is frozen."""

    name: Literal["prompt-tuning"]
    lr: float = Field(3e-2, gt=0, description="soft prompts need a large learning rate")
    num_virtual_tokens: int = Field(20, ge=1)
    init: Literal["sample-vocab", "random"] = Field(
        "sample-vocab", description="start from embeddings of random vocabulary tokens, or from noise"
    )


class PrefixTuningStrategyConfig(EncoderTrainingConfig):
    """Prefix tuning through peft: trainable keys/values prepended in every attention layer."""

    name: Literal["prefix-tuning"]
    lr: float = Field(1e-2, gt=0)
    num_virtual_tokens: int = Field(20, ge=1)
    prefix_projection: bool = Field(False, description="reparametrise the prefix through a 2-layer MLP")
    projection_size: int = Field(512, ge=1, description="hidden size of that MLP")


class BitFitConfig(EncoderTrainingConfig):
    """Train only the bias terms (and the head)."""

    name: Literal["bitfit"]
    lr: float = Field(5e-3, gt=0)


class AdapterStrategyConfig(EncoderTrainingConfig):
    """Houlsby bottleneck adapters after the attention output and the feed-forward output of every layer."""

    name: Literal["adapter"]
    lr: float = Field(1e-3, gt=0)
    reduction_factor: int = Field(16, ge=1, description="hidden size / bottleneck size")
    train_layer_norm: bool = Field(True, description="also train LayerNorms, as Houlsby et al. do")
    adapter_modules: list[str] | None = Field(
        None, description="modules whose output gets an adapter; default per architecture"
    )


# ---------------------------------------------------------------------------------------------------
# Generation (task: generation): a causal LM writes the target text. Same names as their classification
# counterparts where the idea is the same; the task decides which config a name means.


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


class SupervisedFinetuneBase(GenerationBase):
    """Supervised fine-tuning: next-token loss on the target tokens only (the prompt is masked with -100)."""

    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accumulation: int = Field(1, ge=1, description="batches per optimiser step")
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(2, ge=1, description="epochs without a lower dev loss before stopping")
    batching: Literal["length-grouped", "packed", "random"] = Field(
        "length-grouped",
        description="length-grouped: similar lengths share a batch (less padding); packed: several examples "
        "in one row with attention kept inside each example",
    )
    adversarial: AdversarialConfig | None = _adversarial_field()


class GenerationFullConfig(SupervisedFinetuneBase):
    """Every weight trained. Small learning rate: the model already writes fluent text."""

    name: Literal["full-finetune"]
    lr: float = Field(5e-5, gt=0)


class GenerationLoraConfig(SupervisedFinetuneBase):
    """LoRA through peft on the attention (or all linear) projections."""

    name: Literal["lora"]
    lr: float = Field(1e-3, gt=0)
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Literal["attention", "all-linear"] | list[str] = "all-linear"


class GenerationPromptTuningConfig(SupervisedFinetuneBase):
    """Soft prompt through peft: trained virtual-token embeddings before the input; the LM is frozen."""

    name: Literal["prompt-tuning"]
    lr: float = Field(3e-2, gt=0)
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


# ---------------------------------------------------------------------------------------------------
# NER (task: ner): one tag per word. The trained strategies share the classification ones' settings plus
# the tag scheme, sub-token labelling and the window stride for long sentences.


class NerTask(Strict):
    """Marks a strategy config of task: ner."""


class NerOptions(NerTask):
    """What every trained NER strategy adds: how tags are encoded and how sentences meet the model's limit."""

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
    head_lr: float = Field(
        5e-3,
        gt=0,
        description="learning rate of the tag layer (from scratch; 2e-3 barely leaves all-O at K=100)",
    )
    epochs: int = Field(20, ge=1, description="epochs at most (early stopping on dev entity F1)")
    patience: int = Field(4, ge=1, description="epochs without a better dev entity F1 before stopping")


class NerHeadFinetuneConfig(NerOptions, HeadFinetuneConfig):
    """Backbone + linear tag classifier on every token's hidden state, full fine-tuning."""

    max_length: int = Field(128, ge=8)


class NerLoraConfig(NerOptions, LoraStrategyConfig):
    """LoRA on the backbone, a fully trained tag classifier."""

    lr: float = Field(
        5e-3,
        gt=0,
        description="learning rate of the LoRA matrices (5e-3, as classification LoRA; 2e-3 "
        "left smollm2 all-O at K=100)",
    )
    max_length: int = Field(128, ge=8)


class NerBitFitConfig(NerOptions, BitFitConfig):
    max_length: int = Field(128, ge=8)


class NerAdapterConfig(NerOptions, AdapterStrategyConfig):
    max_length: int = Field(128, ge=8)


class NerPromptingConfig(NerTask, StrategyBase):
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


NerStrategyConfig = Annotated[
    NerHeadFinetuneConfig
    | NerLoraConfig
    | NerBitFitConfig
    | NerAdapterConfig
    | NerZeroShotConfig
    | NerInContextConfig,
    Field(discriminator="name"),
]


GenerationStrategyConfig = Annotated[
    GenerationZeroShotConfig
    | GenerationInContextConfig
    | GenerationFullConfig
    | GenerationLoraConfig
    | GenerationPromptTuningConfig,
    Field(discriminator="name"),
]


# ---------------------------------------------------------------------------------------------------
# Span tasks on encoders: relation (entity-pair classification) and extractive-qa (answer spans). Same names
# and settings as their classification counterparts, plus the task's own options.


class RelationOptions(Strict):
    """task: relation. Entity markers [E1] [/E1] [E2] [/E2] are inserted and trained as new tokens."""

    entity_pooling: Literal["entity-start", "pooled"] = Field(
        "entity-start",
        description="entity-start: the states at [E1] and [E2] concatenated (Baldini Soares et al. 2019); "
        "pooled: one pooled sentence state (see pooling)",
    )


class RelationHeadFinetuneConfig(HeadFinetuneConfig, RelationOptions):
    """Full fine-tuning of the encoder with an entity-start relation head."""


class RelationLoraConfig(LoraStrategyConfig, RelationOptions):
    """LoRA through peft; the marker embeddings train too (peft trainable_token_indices)."""


class RelationBitFitConfig(BitFitConfig, RelationOptions):
    """Bias terms, the marker embeddings and the head train."""


class RelationAdapterConfig(AdapterStrategyConfig, RelationOptions):
    """Houlsby adapters, the marker embeddings and the head train."""


class ExtractiveQAOptions(Strict):
    """task: extractive-qa. Long contexts are split into overlapping windows; the best span over all wins."""

    max_length: int = Field(384, ge=32, description="question + context window, in tokens")
    doc_stride: int = Field(128, ge=1, description="tokens shared by consecutive windows of a long context")
    max_answer_length: int = Field(30, ge=1, description="longest answer considered, in tokens")
    n_best: int = Field(20, ge=1, description="start and end candidates per window in post-processing")

    @model_validator(mode="after")
    def _stride_fits(self) -> ExtractiveQAOptions:
        if self.doc_stride >= self.max_length // 2:
            raise ValueError(
                f"doc_stride ({self.doc_stride}) must be below half of max_length ({self.max_length}); "
                f"nearest valid value: {self.max_length // 2 - 1}"
            )
        return self


class QAHeadFinetuneConfig(ExtractiveQAOptions, HeadFinetuneConfig):
    """Encoder + start/end linear head (as AutoModelForQuestionAnswering), full fine-tuning."""

    lr: float = Field(5e-5, gt=0)


class QALoraConfig(ExtractiveQAOptions, LoraStrategyConfig):
    """LoRA through peft on the encoder; the start/end head trains in full."""

    lr: float = Field(1e-3, gt=0)


RELATION_STRATEGY_CONFIGS: dict[str, type[StrategyBase]] = {
    "head-finetune": RelationHeadFinetuneConfig,
    "lora": RelationLoraConfig,
    "bitfit": RelationBitFitConfig,
    "adapter": RelationAdapterConfig,
}
QA_STRATEGY_CONFIGS: dict[str, type[StrategyBase]] = {
    "head-finetune": QAHeadFinetuneConfig,
    "lora": QALoraConfig,
}


StrategyConfig = Annotated[
    ZeroShotConfig
    | InContextConfig
    | HeadFinetuneConfig
    | LoraStrategyConfig
    | IA3StrategyConfig
    | PromptTuningStrategyConfig
    | PrefixTuningStrategyConfig
    | BitFitConfig
    | AdapterStrategyConfig
    | ContrastiveConfig
    | PromptFinetuneConfig,
    Field(discriminator="name"),
]


def _by_name(union: Any) -> dict[str, type[StrategyBase]]:
    return {
        get_args(cls.model_fields["name"].annotation)[0]: cls  # type: ignore[misc]
        for cls in get_args(get_args(union)[0])
    }


STRATEGY_CONFIGS: dict[str, type[StrategyBase]] = _by_name(StrategyConfig)
GENERATION_STRATEGY_CONFIGS: dict[str, type[StrategyBase]] = _by_name(GenerationStrategyConfig)
NER_STRATEGY_CONFIGS: dict[str, type[StrategyBase]] = _by_name(NerStrategyConfig)
Task = Literal["classification", "generation", "ner", "relation", "extractive-qa"]
TASK_METRICS = {
    "classification": ("accuracy", "macro_f1"),
    "generation": ("chrf", "rougeL", "rouge1", "rouge2", "bleu", "exact_match", "perplexity"),
    "ner": ("f1", "precision", "recall", "strict_f1", "token_accuracy"),
    "relation": ("micro_f1", "macro_f1", "accuracy"),
    "extractive-qa": ("f1", "exact_match"),
}


def strategy_configs(task: str = "classification") -> dict[str, type[StrategyBase]]:
    """Strategy name -> config class for a task (a name such as lora means a different strategy per task)."""
    if task == "relation":
        return RELATION_STRATEGY_CONFIGS
    if task == "extractive-qa":
        return QA_STRATEGY_CONFIGS
    if task == "ner":
        return NER_STRATEGY_CONFIGS
    return GENERATION_STRATEGY_CONFIGS if task == "generation" else STRATEGY_CONFIGS


def parse_strategy(raw: Any, task: str = "classification", where: str = "strategies.0") -> StrategyBase:
    """One strategy block as its task's config class; errors name the block's path."""
    if isinstance(raw, StrategyBase):
        return raw
    registry = strategy_configs(task)
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ValueError(f"{where}: expected a mapping with a 'name' (one of {', '.join(registry)})")
    if raw["name"] not in registry:
        raise ValueError(
            f"{where}.name: unknown strategy '{raw['name']}' (task: {task}); available: {', '.join(registry)}."
            + did_you_mean(str(raw["name"]), registry)
        )
    try:
        return registry[raw["name"]].model_validate(raw)
    except ValidationError as err:
        lines = [
            f"{'.'.join([where, *map(str, e['loc'])])}: {e['msg'].removeprefix('Value error, ')}"
            + (f" (got {e['input']!r})" if _shows_input(e) else "")
            for e in err.errors()
        ]
        raise ValueError("\n  ".join(lines)) from None


def _shows_input(e: Any) -> bool:
    return e.get("type") != "missing" and "input" in e and not isinstance(e["input"], dict)


# Continual methods: used by taskfit continual (a task sequence) and by `from:` (an incremental update).


class ContinualMethodBase(Strict):
    id: str | None = Field(None, description="row name in the report; default: the method name")
    lr: float | None = Field(
        None, gt=0, description="encoder learning rate for this method; default training.lr"
    )
    head_lr: float | None = Field(None, gt=0, description="head learning rate; default training.head_lr")

    @property
    def run_id(self) -> str:
        return self.id or self.name  # type: ignore[attr-defined]


class NaiveMethod(ContinualMethodBase):
    """Plain sequential fine-tuning: the baseline every other method is measured against."""

    name: Literal["naive"]


class EwcMethod(ContinualMethodBase):
    """Elastic weight consolidation (Kirkpatrick et al. 2017), diagonal Fisher summed over past tasks."""

    name: Literal["ewc"]
    strength: float = Field(
        1.0,
        ge=0,
        description="lambda: weight of sum_i F_i (theta_i - theta*_i)^2 / 2, F scaled to mean 1 (so on l2's scale)",
    )
    fisher_samples: int = Field(
        256, ge=1, description="training examples of a finished task used to estimate its Fisher"
    )


class L2Method(ContinualMethodBase):
    """L2 pull towards the weights at the end of the previous stage (EWC with F = 1)."""

    name: Literal["l2"]
    strength: float = Field(1.0, ge=0, description="lambda: weight of sum_i (theta_i - theta*_i)^2 / 2")


class ReplayMethod(ContinualMethodBase):
    """Experience replay: a fixed-size buffer of past examples, mixed into every batch of later stages."""

    name: Literal["replay"]
    buffer_size: int = Field(64, ge=1, description="examples kept from all past tasks together")
    policy: Literal["reservoir", "balanced"] = Field(
        "reservoir", description="reservoir sampling of the stream, or equal slots per (task, label)"
    )
    replay_batch_size: int | None = Field(
        None, ge=1, description="buffer examples added to each batch; default the batch size"
    )


class LwfMethod(ContinualMethodBase):
    """Learning without forgetting (Li & Hoiem 2017): the previous model's old-head outputs on the new data
    are distillation targets for the current model."""

    name: Literal["lwf"]
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(1.0, ge=0, description="weight of the distillation loss per past task")


class PerTaskLoraMethod(ContinualMethodBase):
    """One LoRA adapter and head per task on a frozen encoder: nothing shared trains, so nothing is forgotten.
    The task is chosen by name at prediction."""

    name: Literal["per-task-lora"]
    lr: float | None = Field(5e-3, gt=0, description="LoRA's learning rate (5e-3, as the lora strategy)")
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: TargetModules = Field("attention", description="attention, all-linear, or module names")


class PerTaskAdapterMethod(ContinualMethodBase):
    """One Houlsby bottleneck adapter per task after each attention and feed-forward output, and one head per
    task, on a frozen encoder (LayerNorms frozen too: they would be shared)."""

    name: Literal["per-task-adapter"]
    lr: float | None = Field(
        1e-3, gt=0, description="the adapters' learning rate (1e-3, as the adapter strategy)"
    )
    reduction_factor: int = Field(16, ge=1, description="hidden size / bottleneck size")
    adapter_modules: list[str] | None = Field(
        None, description="modules whose output gets the adapters; default per architecture"
    )


ContinualMethod = Annotated[
    NaiveMethod | EwcMethod | L2Method | ReplayMethod | LwfMethod | PerTaskLoraMethod | PerTaskAdapterMethod,
    Field(discriminator="name"),
]
CONTINUAL_METHODS: dict[str, type[ContinualMethodBase]] = {
    "naive": NaiveMethod,
    "ewc": EwcMethod,
    "l2": L2Method,
    "replay": ReplayMethod,
    "lwf": LwfMethod,
    "per-task-lora": PerTaskLoraMethod,
    "per-task-adapter": PerTaskAdapterMethod,
}


UpdateMethod = Annotated[NaiveMethod | EwcMethod | L2Method | ReplayMethod, Field(discriminator="name")]


class BudgetConfig(Strict):
    """Limits for the report's 'best under a cost budget' recommendation; unset ones do not constrain."""

    fit_seconds: float | None = Field(None, gt=0, description="mean training time per run, search included")
    trainable_params: int | None = Field(None, ge=0)
    peak_memory_mb: float | None = Field(None, gt=0, description="peak resident memory of a run's process")
    saved_mb: float | None = Field(None, gt=0, description="size of what a run saves")
    predict_examples_per_s: float | None = Field(None, gt=0, description="minimum inference throughput")


class TrainingConfig(Strict):
    """How the gradient-based strategies run, checkpoint and report. Only ``mixed_precision`` changes what a
    cell computes (so only it is part of a cell's key); the rest is about not losing work."""

    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="autocast precision through accelerate; fp16 needs a GPU, bf16 a recent GPU or CPU"
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="optimiser steps between checkpoints; null: by time only"
    )
    checkpoint_every_minutes: float | None = Field(
        15.0,
        gt=0,
        description="minutes of training between checkpoints (short runs never write one); null: off",
    )
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept per cell while it trains")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="experiment trackers fed per epoch (into the cell folder; mlflow: MLFLOW_TRACKING_URI if "
        "set, else a local store under the output folder); empty: none, nothing leaves the machine",
    )


class ExperimentConfig(Strict):
    """One experiment: a grid of strategies x backbones x shots x seeds on the same k-shot splits."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    name: str = "experiment"
    task: Task = Field(
        "classification", description="classification, generation, ner, relation or extractive-qa"
    )
    metric: str | None = Field(
        None,
        description="what the leaderboard ranks by; classification: accuracy (default) or macro_f1; generation: "
        "chrf (default), rougeL, rouge1, rouge2, bleu, exact_match or perplexity (open-ended dialogue); ner: f1 "
        "(entity-level, default), precision, recall, strict_f1 or token_accuracy; "
        "relation: micro_f1 (default), macro_f1 or accuracy; extractive-qa: f1 (default) or exact_match",
    )
    data: DataConfig
    prompt: PromptConfig | None = Field(None, description="default: the built-in dataset's template")
    # The task decides which config class a strategy name means, so the blocks are parsed by _parse_strategies.
    strategies: list[SerializeAsAny[StrategyBase]] = Field(..., min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    output_dir: str | None = Field(None, description="default: runs/<name>")
    trust_remote_code: bool = Field(
        False, description="allow model code from the hub; off unless you trust it"
    )
    device: str = Field("auto", description="auto (first GPU if any, else CPU), cpu, cuda or cuda:N")
    workers: int | Literal["auto"] = Field(
        "auto", description="grid cells run at once, each in its own process; auto: by cores (1 on a GPU)"
    )
    threads_per_worker: int | None = Field(
        None, ge=1, description="torch threads per cell; default cores/workers"
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="precision, checkpoints, trackers of the training loop"
    )
    from_run: str | None = Field(
        None,
        alias="from",
        description="incremental update: a saved classification run (a cell folder or its model/ folder) of the "
        "same strategy and backbone; every cell starts from its weights and fine-tunes on data",
    )
    old_data: DataConfig | None = Field(
        None,
        description="with from: the data the saved run learned; its test split measures forgetting, its train "
        "split feeds replay and the EWC Fisher",
    )
    continual: UpdateMethod | None = Field(
        None, description="with from: how forgetting is limited: naive (default), l2, ewc or replay"
    )

    @field_validator("strategies", mode="before")
    @classmethod
    def _parse_strategies(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        task = info.data.get("task", "classification")
        return [parse_strategy(item, task, f"strategies.{i}") for i, item in enumerate(value)]

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None, info: ValidationInfo) -> str | None:
        task = info.data.get("task", "classification")
        valid = TASK_METRICS.get(task, TASK_METRICS["classification"])
        if value is not None and value not in valid:
            raise ValueError(
                f"'{value}' is not a {task} metric; one of {', '.join(valid)}." + did_you_mean(value, valid)
            )
        return value

    @field_validator("workers")
    @classmethod
    def _positive_workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("workers must be at least 1 (or auto)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _expand_backbone_lists(cls, raw: Any) -> Any:
        """``backbone: [minilm, smollm2]`` on a strategy means one grid row per backbone."""
        if isinstance(raw, dict) and isinstance(raw.get("strategies"), list):
            expanded = []
            for item in raw["strategies"]:
                if isinstance(item, dict) and isinstance(item.get("backbone"), list):
                    expanded.extend({**item, "backbone": b} for b in item["backbone"])
                else:
                    expanded.append(item)
            raw = {**raw, "strategies": expanded}
        return raw

    @model_validator(mode="after")
    def _update_needs_from(self) -> ExperimentConfig:
        if self.from_run is None:
            if self.old_data is not None or self.continual is not None:
                raise ValueError(
                    "old_data and continual only apply to an incremental update: add from: RUN_DIR"
                )
            return self
        if self.task != "classification":
            raise ValueError("from: (incremental update) supports classification runs only")
        method = self.continual.name if self.continual else "naive"
        if self.continual and (self.continual.lr or self.continual.head_lr):
            raise ValueError("continual.lr/head_lr: with from:, set lr and head_lr on the strategy instead")
        from taskfit.continual.incremental import check_saved_run

        try:
            for i, strategy in enumerate(self.strategies):
                check_saved_run(self.from_run, strategy, where=f"strategies.{i}")
        except TaskfitError as exc:
            raise ValueError(str(exc)) from None
        if method in ("ewc", "replay") and self.old_data is None:
            raise ValueError(f"continual: {method} needs old_data (the data the saved run learned)")
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> ExperimentConfig:
        rows = [(s.run_id, s.backbone) for s in self.strategies]
        dup = sorted({f"{i} on {b}" for i, b in rows if rows.count((i, b)) > 1})
        if dup:
            raise ValueError(f"strategies repeat {dup}; give each an 'id'")
        return self


# ---------------------------------------------------------------------------------------------------
# Unknown-key checking with "did you mean": pydantic reports extra keys but not the closest valid one.


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out.extend(_model_types(arg))
    return out


def _container(annotation: Any, value: Any) -> Any:
    """The list[...] or dict[...] member of an (optional) annotation that matches the value's shape."""
    wanted = list if isinstance(value, list) else dict if isinstance(value, dict) else None
    for member in (annotation, *get_args(annotation)):
        if wanted is not None and get_origin(member) is wanted:
            return member
    return annotation


def _check_keys(model: type[BaseModel], data: Any, path: str, task: str = "classification") -> None:
    if not isinstance(data, dict):
        return
    fields = {**model.model_fields, **{f.alias: f for f in model.model_fields.values() if f.alias}}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields and key in STRATEGY_ONLY_KEYS and issubclass(model, StrategyBase):
            raise TaskfitError(_not_supported(model, key, path, task))
        if key not in fields:
            raise TaskfitError(
                f"unknown config key '{where}'."
                + did_you_mean(str(key), fields)
                + f" Valid keys here: {', '.join(fields)}."
            )
        if model is ExperimentConfig and key == "strategies" and isinstance(value, list):
            for i, item in enumerate(value):  # which class a name means depends on the task
                if isinstance(item, dict) and "name" in item:
                    registry = strategy_configs(task)
                    _check_strategy_name(item["name"], f"{where}.{i}", task)
                    _check_keys(registry[item["name"]], item, f"{where}.{i}", task)
            continue
        annotation = _container(fields[key].annotation, value)
        if get_origin(annotation) is list and isinstance(value, list):
            candidates = _model_types(get_args(annotation)[0])
            items = [(f"{where}.{i}", item) for i, item in enumerate(value)]
        elif get_origin(annotation) is dict and isinstance(value, dict):
            candidates = _model_types(get_args(annotation)[1])
            items = [(f"{where}.{k}", item) for k, item in value.items()]
        else:
            candidates = _model_types(annotation)
            items = [(where, value)]
        for item_path, item in items:
            if len(candidates) == 1:
                _check_keys(candidates[0], item, item_path, task)


STRATEGY_ONLY_KEYS = {
    "adversarial": "trains by gradient through the shared training loop",
    "augment": "trains on the K-shot training sample",
}


def _not_supported(model: type[BaseModel], key: str, path: str, task: str) -> str:
    """Which strategies take ``augment:``/``adversarial:``, for a block whose strategy does not."""
    name = get_args(model.model_fields["name"].annotation)[0]
    takers = [n for n, cls in strategy_configs(task).items() if key in cls.model_fields]
    return (
        f"{path}.{key}: the {task} strategy '{name}' does not support '{key}:' (only a strategy that "
        f"{STRATEGY_ONLY_KEYS[key]} does: {', '.join(takers)}). Move it to one of those or remove it."
    )


def _check_strategy_name(name: Any, path: str, task: str = "classification") -> None:
    registry = strategy_configs(task)
    if not isinstance(name, str):
        raise TaskfitError(
            f"{path}.name: expected one strategy name, got {name!r}; available: {', '.join(registry)}"
        )
    if name not in registry:
        other = "generation" if task == "classification" else "classification"
        hint = (
            f" ('{name}' is a {other} strategy: set task: {other}?)"
            if name in strategy_configs(other)
            else ""
        )
        if task == "ner" and not hint:
            hint = " (NER strategies: the trained ones tag every token; zero-shot/in-context prompt an LM)"
        raise TaskfitError(
            f"{path}.name: unknown strategy '{name}' (task: {task}); available: {', '.join(registry)}."
            + did_you_mean(str(name), registry)
            + hint
        )


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if "[" not in str(p))
        message = e["msg"].removeprefix("Value error, ")
        if loc == "strategies" and message.startswith("strategies."):
            lines.append(f"  {message}")  # parse_strategy names the block and key itself
            continue
        got = f" (got {e['input']!r})" if _shows_input(e) else ""
        lines.append(f"  {loc or '(top level)'}: {message}{got}")
    return "invalid config:\n" + "\n".join(lines)


def validate_config(raw: dict[str, Any]) -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise TaskfitError(f"a config must be a mapping of keys to values, got {type(raw).__name__}")
    task = raw.get("task", "classification")
    if task not in get_args(Task):  # first: which strategies are valid depends on it
        raise TaskfitError(
            f"task: {task!r} is not a task; tasks: {', '.join(get_args(Task))}."
            + did_you_mean(str(task), get_args(Task))
        )
    _check_keys(ExperimentConfig, raw, "", task)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise TaskfitError(_format_validation_error(err)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.sub=value`` (list items by index: ``strategies.0.lr=1e-4``); values parsed as YAML."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise TaskfitError(f"--set expects key=value, got '{item}'")
        value = yaml.safe_load(text) if text else ""
        parts = key.split(".")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise TaskfitError(
                        f"--set {key}: '{'.'.join(parts[:i])}' has {len(node)} items; '{part}' is not a valid index"
                    )
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise TaskfitError(f"--set {key}: '{last}' is not a valid index (list of {len(node)})")
            node[int(last)] = value
        else:
            node[last] = value
    return raw


def _load_yaml(path: str | Path, overrides: list[str] | None, validate):
    """Read a YAML config, apply ``--set`` overrides and validate it; every error names the file (and the
    line, for YAML syntax)."""
    path = Path(path)
    if not path.exists():
        raise TaskfitError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise TaskfitError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError as exc:
        raise TaskfitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    raw = apply_overrides(raw, overrides or [])
    try:
        return validate(raw)
    except TaskfitError as exc:
        raise TaskfitError(f"{path}: {exc}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    return _load_yaml(path, overrides, validate_config)


# ---------------------------------------------------------------------------------------------------
# Continual learning (taskfit continual): one model trained over a sequence of tasks.


class ContinualTask(Strict):
    """One stage of the sequence: a classification task with its own label set (and its own head)."""

    name: str = Field(..., description="the task's name: its head, its row/column in R, --task-name")
    data: DataConfig

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "." in value or "/" in value:
            raise ValueError(f"task name {value!r}: use letters, digits, '-' or '_' (no '.' or '/')")
        return value

    @model_validator(mode="after")
    def _one_k(self) -> ContinualTask:
        if isinstance(self.data.shots, list):
            raise ValueError(f"task {self.name}: data.shots must be one K per class here, not a grid")
        return self


class ContinualTraining(Strict):
    """How each stage trains (the head-finetune loop); defaults suit ~16-64 shots per class."""

    lr: float = Field(5e-5, gt=0, description="learning rate of the shared encoder")
    head_lr: float = Field(2e-3, gt=0, description="learning rate of the task heads")
    epochs: int = Field(8, ge=1, description="epochs per stage (early stopping on the stage's dev set)")
    batch_size: int = Field(8, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(3, ge=1, description="epochs without dev improvement before a stage stops")
    pooling: Literal["auto", "mean", "cls", "last"] = "auto"
    max_length: int = Field(128, ge=8)


class ContinualConfig(Strict):
    """A sequence of tasks, trained one after the other with each method; every task evaluated after every
    stage (task-incremental: one head per task, the task's name known at prediction)."""

    name: str = "continual"
    backbone: str = Field("minilm", description="an encoder: minilm, a hub id or a local folder")
    tasks: list[ContinualTask] = Field(..., min_length=2)
    methods: list[ContinualMethod] = Field(..., min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    training: ContinualTraining = Field(default_factory=ContinualTraining)
    output_dir: str | None = Field(None, description="default: runs/<name>")
    trust_remote_code: bool = False
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")

    @model_validator(mode="after")
    def _unique(self) -> ContinualConfig:
        names = [t.name for t in self.tasks]
        ids = [m.run_id for m in self.methods]
        for what, values in (("tasks", names), ("methods", ids)):
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValueError(
                    f"{what} repeat {dup}" + ("; give each an 'id'" if what == "methods" else "")
                )
        return self


def validate_continual_config(raw: Any) -> ContinualConfig:
    if not isinstance(raw, dict):
        raise TaskfitError(f"a config must be a mapping of keys to values, got {type(raw).__name__}")
    _check_keys(ContinualConfig, {k: v for k, v in raw.items() if k != "methods"}, "")
    methods = raw.get("methods")
    for i, item in enumerate(methods if isinstance(methods, list) else []):
        where = f"methods.{i}"
        if not isinstance(item, dict) or item.get("name") not in CONTINUAL_METHODS:
            name = item.get("name") if isinstance(item, dict) else item
            raise TaskfitError(
                f"{where}.name: unknown continual method {name!r}; available: {', '.join(CONTINUAL_METHODS)}."
                + did_you_mean(str(name), CONTINUAL_METHODS)
            )
        _check_keys(CONTINUAL_METHODS[item["name"]], item, where)
    try:
        return ContinualConfig.model_validate(raw)
    except ValidationError as err:
        raise TaskfitError(_format_validation_error(err)) from None


def load_continual_config(path: str | Path, overrides: list[str] | None = None) -> ContinualConfig:
    return _load_yaml(path, overrides, validate_continual_config)
