"""The experiment config: a grid of strategies x backbones x shots x seeds on one task's data."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from taskfit.config.base import StrategyBase, Strict
from taskfit.config.continual import UpdateMethod
from taskfit.config.data import DataConfig
from taskfit.config.prompt import PromptConfig
from taskfit.errors import did_you_mean
from taskfit.tasks.catalog import TASK_METRICS, TASK_NAMES

Task = Literal[TASK_NAMES]  # type: ignore[valid-type]  # the names of taskfit.tasks.catalog


def strategy_configs(task: str = "classification") -> dict[str, type[StrategyBase]]:
    """Strategy name -> config class for a task (a name such as lora means a different strategy per task)."""
    from taskfit.registry import REGISTRY  # lazily: the registry imports this package's strategy configs

    return REGISTRY.configs(task)  # type: ignore[return-value]


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
            + (f" (got {e['input']!r})" if shows_input(e) else "")
            for e in err.errors()
        ]
        raise ValueError("\n  ".join(lines)) from None


def shows_input(e: Any) -> bool:
    return e.get("type") != "missing" and "input" in e and not isinstance(e["input"], dict)


class BudgetConfig(Strict):
    """Limits for the report's 'best under a cost budget' recommendation; unset ones do not constrain."""

    fit_seconds: float | None = Field(None, gt=0, description="mean training time per run, search included")
    trainable_params: int | None = Field(None, ge=0)
    peak_memory_mb: float | None = Field(None, gt=0, description="peak resident memory of a run's process")
    saved_mb: float | None = Field(None, gt=0, description="size of what a run saves")
    predict_examples_per_s: float | None = Field(None, gt=0, description="minimum inference throughput")


class TrainingConfig(Strict):
    """How the gradient-based strategies run, checkpoint and report. Only ``mixed_precision`` and
    ``fast_dropout`` change what a cell computes (so only they are part of a cell's key); the rest is about
    speed and not losing work."""

    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="autocast precision of training and prediction (weights stay fp32): auto is bf16 where "
        "the hardware multiplies bf16 natively (a CPU with AMX, a GPU with bf16) and no (fp32) elsewhere; "
        "fp16 needs a GPU",
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="optimiser steps between checkpoints; null: by time only"
    )
    checkpoint_every_minutes: float | None = Field(
        15.0,
        gt=0,
        description="minutes of training between checkpoints (short runs never write one); null: off",
    )
    fused_optimizer: Literal["auto", "on", "off"] = Field(
        "auto",
        description="AdamW's fused kernel: auto (wherever torch has it for the device), on (required), off "
        "(torch's default implementation); the same update to float rounding, so not part of a cell's key",
    )
    fast_dropout: Literal["auto", "off"] = Field(
        "auto",
        description="dropout masks drawn 16 bits per element from one 64-bit draw per four (a quarter of "
        "torch's cost on a CPU, where its per-element draws were 28% of a LoRA fit); auto: on a CPU, torch's "
        "own on a GPU; off: torch's everywhere. The rate is kept to 1/65536. Other masks, other numbers: part "
        "of a cell's key where it applies",
    )
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept per cell while it trains")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="experiment trackers fed per epoch (into the cell folder; mlflow: MLFLOW_TRACKING_URI if "
        "set, else a local store under the output folder); empty: none, nothing leaves the machine",
    )


class RayConfig(Strict):
    """``executor: ray``: where the cluster is and what each cell asks of it (docs/scale-out.md)."""

    address: str | None = Field(
        None,
        description="the cluster: host:port of a `ray start --head`, ray://host:port (Ray Client) or auto; "
        "null: a Ray cluster on this machine only, started and stopped with the grid",
    )
    max_retries: int = Field(
        2,
        ge=0,
        description="reruns of a cell whose worker process or node died (a cell that fails is not rerun)",
    )
    gpus_per_cell: float = Field(
        0, ge=0, description="GPUs each cell reserves (1 for GPU training; 0.5 to share)"
    )
    memory_gb_per_cell: float | None = Field(
        3, gt=0, description="memory each cell reserves on its node, in GiB; null: not declared"
    )
    parallel_trials: int = Field(
        1,
        ge=1,
        description="trials of a search: cell asked at once and run in parallel on the cluster, each reserving "
        "what a cell does; 1: one after another, as locally. Up to Optuna TPE's 10 random startup trials the "
        "proposals are the same as sequential ones; past them TPE proposes a batch before seeing its results, "
        "so they differ (and such cells are keyed by this value). The local executor ignores it",
    )
    search_storage: str | None = Field(
        None,
        description="an Optuna RDB storage URL (sqlite:///PATH on the node that runs the cell, "
        "postgresql://...) to keep each search cell's study in; null: in memory",
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
    executor: Literal["local", "ray"] = Field(
        "local", description="local: cells in processes on this machine; ray: cells as tasks on a Ray cluster"
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="with executor: ray")
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    final: str | None = Field(
        None,
        description="after the grid, refit a row on every labelled example (train + dev) into runs/NAME/final: "
        "auto = the recommended row (classification), a strategy id names another, none skips it; unset = auto "
        "for your own file of up to 2,000 labels, none for built-in datasets and larger pools",
    )
    final_members: int = Field(
        3,
        ge=1,
        le=8,
        description="with final: auto, when rows cannot be told apart from the recommended one (the report's "
        "'not distinguishable', p >= 0.05 paired over seeds), final/ refits up to this many of them in all, best "
        "first, and averages their label scores with equal weights (no labels spent on weights); 1 = the "
        "recommended row alone. Over five 40-label files (BENCHMARKS.md) the recommended row alone lost 0.097 "
        "macro-F1 on average to the best row on unseen texts, the average of up to three 0.054; with up to five "
        "one file's average fell 0.21 further (a weak, overconfident member dragged it down)",
    )
    correction: bool = Field(
        True,
        description="classification: each cell chooses per-label offsets on its held-out predictions "
        "(cross-fitted, kept only past their bootstrap noise) for the ranking metric, and calibrates its "
        "probabilities to the data's label shares; false = the models' own labels and scores",
    )
    race: bool = Field(
        True,
        description="cross-validated grids with several seeds: every row runs its first seed, and a row clearly "
        "behind the leader on that seed's held-out predictions (2 bootstrap standard errors) is not run on the "
        "other seeds; the report says which, when and why, and a stopped row is never recommended",
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="precision, checkpoints, trackers of the training loop"
    )
    ensembles: list[Literal["seeds", "strategies"]] = Field(
        default_factory=list,
        description="extra leaderboard rows built after the grid from the saved probabilities (no refit): seeds "
        "= a row's seed fits averaged, strategies = the top rows at each K weighted on out-of-fold or dev "
        "predictions (classification); reported beside the rows, never chosen for final/",
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
        # The saved run itself (same strategy and backbone) is checked when the grid is planned
        # (compare.plan.check_update): a validator reads no files.
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
