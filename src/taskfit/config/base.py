"""What every config block shares: strictness, search spaces, the strategy base, and the training options
that every trained strategy takes from one declaration."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from taskfit.errors import did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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

    # -- what compare/ needs to know about a strategy, declared by its config (overridden where it differs;
    # compare/ never probes config fields: issue 32, tests/test_architecture.py) ---------------------------

    def trains_by_epoch(self) -> bool:
        """Fitted by the epoch loop, whose held-out curve cross-validation reads, stops and chooses from."""
        return False

    def epoch_patience(self) -> int | None:
        """Epochs without a better held-out score before the fit stops early; None: it does not stop early."""
        return None

    def calibration_setting(self) -> str | None:
        """Its ``calibration`` (``auto``: chosen on held-out labels); None: it has no calibration."""
        return None

    def chooses_calibration(self) -> bool:
        """Chooses between two calibrations on held-out labels (``calibration: auto``)."""
        return self.calibration_setting() == "auto"

    def holds_one_prefix(self) -> bool:
        """Its fitted model is one demonstration prefix and nothing else (in-context with a shared prefix and
        no prompt search): cross-validation scores it on the labels that are not its demonstrations."""
        return False

    def demonstrations_per_class(self) -> int:
        """Demonstrations per label it places before each query (0: none)."""
        return 0

    def searches_prompts(self) -> bool:
        """Chooses its prompt on dev (``prompt_search``), so it needs labelled examples even at K=0."""
        return False

    def augmentation(self) -> Any:
        """Its ``augment`` block (paraphrases, synonym swaps of the K shots), None when it takes none."""
        return None

    def token_budget(self) -> int | None:
        """Its ``max_length`` (tokens per text or prompt), None when it declares none."""
        return self.model_dump(include={"max_length"}).get("max_length")

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


class ByEpoch(Strict):
    """Declares a config fitted by the epoch loop (``StrategyBase.trains_by_epoch``)."""

    def trains_by_epoch(self) -> bool:
        return True


class ByEpochWithPatience(ByEpoch):
    """... that also stops early after ``patience`` epochs without a better dev score."""

    def epoch_patience(self) -> int | None:
        return self.patience  # type: ignore[attr-defined]


class TrainingOptions(ByEpochWithPatience):
    """The settings of the shared training loop, declared once with the encoder classifiers' defaults. A
    strategy family that takes only some of them uses ``training_options(...)``; one whose default differs
    overrides it with ``option(name, default)``, which keeps the bounds declared here."""

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


CLASS_WEIGHT_HELP = (
    "balanced: each label's examples weigh n / (labels x its count) in the loss (and, for contrastive, "
    "each label anchors as many pairs), so a rare label counts as much as a frequent one; on equal shares "
    "every weight is 1 (issue 36: unweighted, the 27/13 mr file's heads predicted the majority label for "
    "most texts). none: every example weighs the same"
)


def class_weight_field(default: str = "balanced") -> Any:
    return Field(default, description=CLASS_WEIGHT_HELP)


def option(name: str, default: Any, description: str | None = None) -> Any:
    """Training option ``name`` with the bounds ``TrainingOptions`` declares and another default. The
    shared description is for the shared default: an override states its own, or none."""
    shared = TrainingOptions.model_fields[name]
    return FieldInfo.merge_field_infos(shared, default=default, description=description)


# the options of a strategy trained by the shared loop without a separate head (generation SFT,
# prompt-finetune): what training_options gives them besides their own
LOOP_OPTIONS = ("lr", "epochs", "batch_size", "warmup_ratio", "weight_decay", "max_grad_norm", "patience")


def training_options(*names: str, **defaults: Any) -> type[Strict]:
    """A mixin holding only the named training options (a strategy's saved config and cell keys list exactly
    the options it takes); ``defaults`` override a default (a value) or more (a ``Field(...)``)."""
    bad = (set(names) - set(TrainingOptions.model_fields)) | (set(defaults) - set(names))
    if bad:  # a programming error in a config module, caught at import
        raise ValueError(f"training_options: {sorted(bad)} not among the named training options")
    fields: dict[str, Any] = {}
    for name in names:
        info = TrainingOptions.model_fields[name]
        if name in defaults:
            value = defaults[name]
            info = (
                FieldInfo.merge_field_infos(info, value)
                if isinstance(value, FieldInfo)
                else option(name, value)
            )
        fields[name] = (info.annotation, info)
    base = ByEpochWithPatience if "patience" in names else ByEpoch if "epochs" in names else Strict
    return create_model(f"TrainingOptions_{'_'.join(names)}", __base__=base, **fields)
