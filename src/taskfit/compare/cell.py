"""What a worker needs to run one grid cell, typed: built by the planner, validated once, read by the worker.

It is written to the cell folder as ``cell.json`` (``CellSpec.as_json``); the field names are those of the
untyped dict older taskfit versions wrote, so ``taskfit runs show`` reads old and new folders alike.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, model_validator

from taskfit.config import DataConfig, PromptConfig, StrategyBase, TrainingConfig


class ParallelSearch(BaseModel):
    """``executor: ray``: how a ``search:`` cell runs its trials (``compare.ray_search``). Set by the Ray
    executor, never part of the cell's key (``search.parallel_trials_key`` decides what is)."""

    trials: int = 1  # asked before any is told (ray.parallel_trials)
    slots: int = 1  # trials running at once, the cell's own included (at most what the cluster holds)
    storage: str | None = None  # ray.search_storage: an RDB URL for the study, else in memory
    study_name: str = "taskfit"
    resources: dict[str, float] = Field(default_factory=dict)  # what a trial's Ray task reserves


class CellSpec(BaseModel):
    """One cell's resolved settings. ``strategy`` is the validated config of its task's strategy class."""

    # extra fields are ignored: a cell.json written by a later version still reads
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    key: str
    path: str
    task: str = "classification"
    strategy: SerializeAsAny[StrategyBase]
    shots: int | None
    seed: int | None
    data: DataConfig
    prompt: PromptConfig | None = None
    device: str = "auto"
    trust_remote_code: bool = False
    threads: int = 1
    workers: int = 1  # cells running at once: timings are measured under that load
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    resume: bool = False
    # an incremental update (from: RUN_DIR): what it starts from and how it limits forgetting
    from_run: str | None = Field(None, alias="from")
    old_data: DataConfig | None = None
    continual: dict[str, Any] | None = None
    parallel_search: ParallelSearch | None = None
    # a K=0 cell of a cross-validated grid: the (K, seed) pools it predicts besides test (plan.scored_pools)
    pools: list[tuple[int | None, int]] | None = None
    # the metric the cell's held-out choices are made on when not accuracy (plan.choice_metric)
    choose_by: str | None = None
    # the label shares those choices are weighted to (plan.choice_prior)
    prior: dict[str, float] | None = None
    # false: no decision correction (``correction: false`` in the config; compare.correction)
    correct: bool = True

    @model_validator(mode="before")
    @classmethod
    def _strategy_of_task(cls, raw: Any) -> Any:
        """A strategy given as a dict (cell.json) is validated by its task's config class (the registry)."""
        if isinstance(raw, dict) and isinstance(raw.get("strategy"), dict):
            from taskfit.registry import REGISTRY

            task = raw.get("task") or "classification"
            entry = REGISTRY.get(task, raw["strategy"]["name"])
            raw = {**raw, "task": task, "strategy": entry.config.model_validate(raw["strategy"])}
        return raw

    @property
    def is_update(self) -> bool:
        return self.from_run is not None

    def as_json(self) -> dict:
        """cell.json's content (the fields and layout older versions wrote)."""
        out = self.model_dump(
            mode="json",
            by_alias=True,
            exclude={
                "from_run",
                "old_data",
                "continual",
                "parallel_search",
                *(() if self.pools else ("pools",)),
                *(() if self.choose_by else ("choose_by",)),
                *(() if self.prior else ("prior",)),
                *(("correct",) if self.correct else ()),
            },
        )
        if self.parallel_search is not None:  # only then: a local cell's cell.json stays as it was
            out["parallel_search"] = self.parallel_search.model_dump(mode="json")
        if self.is_update:
            out.update(
                {
                    "from": self.from_run,
                    "old_data": self.old_data.model_dump(mode="json") if self.old_data else None,
                    "continual": self.continual,
                }
            )
        return out

    @classmethod
    def build(cls, cell, config, threads: int, workers: int = 1, resume: bool = False) -> CellSpec:
        """The spec of one planned cell (``plan_cells``) of ``config``."""
        from taskfit.training.precision import config_precision

        return cls(
            key=cell.key,
            path=cell.path,
            task=config.task,
            strategy=cell.strategy,
            shots=cell.shots,
            seed=cell.seed,
            data=config.data.for_shots(cell.shots if cell.shots != 0 else None),
            prompt=config.prompt,
            device=config.device,
            trust_remote_code=config.trust_remote_code,
            threads=threads,
            workers=workers,
            # auto resolved once, where the grid is planned: every cell computes in what its key records
            training=config.training.model_copy(update={"mixed_precision": config_precision(config)}),
            resume=resume,
            from_run=config.from_run,
            old_data=config.old_data,
            continual=config.continual.model_dump(mode="json") if config.continual else None,
            pools=list(getattr(cell, "pools", ())) or None,
            choose_by=getattr(cell, "choose_by", None),
            prior=dict(getattr(cell, "prior", ())) or None,
            correct=config.correction,
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cell_record(
    cell: Any, status: str, metrics: dict | None = None, error: str = "", spec: CellSpec | dict | None = None
) -> dict:
    """A cell's row in taskfit.db (``compare.store``); ``cell``: the planned ``compare.plan.Cell``."""
    from taskfit.compare.plan import shots_label

    m = metrics or {}
    return {
        "cell": cell.path,
        "key": cell.key,
        "strategy": cell.strategy.run_id,
        "method": cell.strategy.name,  # type: ignore[attr-defined]
        "backbone": cell.strategy.backbone,
        "shots": shots_label(cell.shots),
        "seed": cell.seed,
        "status": status,
        "accuracy": m.get("accuracy"),
        "macro_f1": m.get("macro_f1"),
        "trainable_params": m.get("trainable_params"),
        "total_params": m.get("total_params"),
        "load_seconds": m.get("load_seconds"),
        "fit_seconds": m.get("fit_seconds"),
        "predict_examples_per_s": m.get("predict_examples_per_s"),
        "peak_rss_mb": m.get("peak_rss_mb"),
        "saved_mb": m.get("saved_mb"),
        "search_trials": m.get("search_trials"),
        "chosen": m.get("chosen") or None,
        "error": error or None,
        "config": spec.as_json() if isinstance(spec, CellSpec) else spec,  # a finished cell's: its cell.json
        "metrics": m or None,
        "updated_at": _now(),
    }
