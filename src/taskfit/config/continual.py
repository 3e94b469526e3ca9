"""Continual learning configs: the methods that limit forgetting (used by ``taskfit continual``, a task
sequence, and by ``from:``, an incremental update) and the task-sequence config itself."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from taskfit.config.base import Strict, training_options
from taskfit.config.classification import TargetModules
from taskfit.config.data import DataConfig


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


class ContinualTraining(
    training_options(
        "lr",
        "head_lr",
        "epochs",
        "batch_size",
        "warmup_ratio",
        "weight_decay",
        "dropout",
        "max_grad_norm",
        "patience",
        "pooling",
        "max_length",
        lr=Field(description="learning rate of the shared encoder"),
        head_lr=Field(description="learning rate of the task heads"),
        epochs=Field(8, description="epochs per stage (early stopping on the stage's dev set)"),
        patience=Field(3, description="epochs without dev improvement before a stage stops"),
        max_length=128,
    )
):
    """How each stage trains (the head-finetune loop); defaults suit ~16-64 shots per class."""


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
