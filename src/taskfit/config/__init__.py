"""Experiment configs: typed, validated, and strict. An unknown key is an error naming the closest valid one.

A config file holds only what differs from the defaults (see ``examples/``). ``--set a.b=value`` edits
a loaded config before validation, with the same checks.

The package by concern: ``base`` (strictness, search spaces, the strategy base and the shared training
options), ``data``, ``prompt``, ``augment``, one module of strategy configs per task family
(``classification``, ``generation``, ``ner``, ``span``), ``continual``, ``experiment`` and ``loading``. Which
config class a strategy name means for a task comes from ``taskfit.registry``.
"""

from __future__ import annotations

from typing import Any

from taskfit.config.augment import (
    CHAR_OPS,
    WORD_OPS,
    AdversarialConfig,
    AugmentConfig,
    AugmentOp,
    ParaphraseConfig,
)
from taskfit.config.base import (
    NOT_SEARCHABLE,
    RangeSpace,
    SearchSpace,
    StrategyBase,
    Strict,
    TrainingOptions,
    option,
    training_options,
)
from taskfit.config.classification import (
    AdapterStrategyConfig,
    BitFitConfig,
    ContrastiveConfig,
    EncoderTrainingConfig,
    HeadFinetuneConfig,
    IA3StrategyConfig,
    InContextConfig,
    LoraStrategyConfig,
    PrefixTuningStrategyConfig,
    PromptFinetuneConfig,
    PromptTuningStrategyConfig,
    TargetModules,
    ZeroShotConfig,
)
from taskfit.config.continual import (
    CONTINUAL_METHODS,
    ContinualConfig,
    ContinualMethod,
    ContinualMethodBase,
    ContinualTask,
    ContinualTraining,
    EwcMethod,
    L2Method,
    LwfMethod,
    NaiveMethod,
    PerTaskAdapterMethod,
    PerTaskLoraMethod,
    ReplayMethod,
    UpdateMethod,
)
from taskfit.config.data import ColumnsConfig, DataConfig, Shots
from taskfit.config.experiment import (
    TASK_METRICS,
    BudgetConfig,
    ExperimentConfig,
    RayConfig,
    Task,
    TrainingConfig,
    parse_strategy,
    strategy_configs,
)
from taskfit.config.generation import (
    DecodingConfig,
    GenerationBase,
    GenerationFullConfig,
    GenerationInContextConfig,
    GenerationLoraConfig,
    GenerationPromptTuningConfig,
    GenerationZeroShotConfig,
    SupervisedFinetuneBase,
)
from taskfit.config.loading import (
    STRATEGY_ONLY_KEYS,
    apply_overrides,
    load_config,
    load_continual_config,
    validate_config,
    validate_continual_config,
)
from taskfit.config.ner import (
    NerAdapterConfig,
    NerBitFitConfig,
    NerHeadFinetuneConfig,
    NerInContextConfig,
    NerLoraConfig,
    NerOptions,
    NerPromptingConfig,
    NerZeroShotConfig,
)
from taskfit.config.prompt import (
    CALIBRATION_HELP,
    CalibratedPrompting,
    Calibration,
    PromptConfig,
    PromptSearchConfig,
)
from taskfit.config.span import (
    ExtractiveQAOptions,
    QAHeadFinetuneConfig,
    QALoraConfig,
    RelationAdapterConfig,
    RelationBitFitConfig,
    RelationHeadFinetuneConfig,
    RelationLoraConfig,
    RelationOptions,
)

# Per-task name -> config class tables, derived from the registry on first use (the registry imports this
# package, so it cannot be imported while the package loads).
_TABLES = {
    "STRATEGY_CONFIGS": "classification",
    "NER_STRATEGY_CONFIGS": "ner",
    "RELATION_STRATEGY_CONFIGS": "relation",
    "QA_STRATEGY_CONFIGS": "extractive-qa",
}


def __getattr__(name: str) -> Any:
    if name in _TABLES:
        return strategy_configs(_TABLES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CALIBRATION_HELP",
    "CHAR_OPS",
    "CONTINUAL_METHODS",
    "NOT_SEARCHABLE",
    "STRATEGY_ONLY_KEYS",
    "TASK_METRICS",
    "WORD_OPS",
    "AdapterStrategyConfig",
    "AdversarialConfig",
    "AugmentConfig",
    "AugmentOp",
    "BitFitConfig",
    "BudgetConfig",
    "RayConfig",
    "CalibratedPrompting",
    "Calibration",
    "ColumnsConfig",
    "ContinualConfig",
    "ContinualMethod",
    "ContinualMethodBase",
    "ContinualTask",
    "ContinualTraining",
    "ContrastiveConfig",
    "DataConfig",
    "DecodingConfig",
    "EncoderTrainingConfig",
    "EwcMethod",
    "ExperimentConfig",
    "ExtractiveQAOptions",
    "GenerationBase",
    "GenerationFullConfig",
    "GenerationInContextConfig",
    "GenerationLoraConfig",
    "GenerationPromptTuningConfig",
    "GenerationZeroShotConfig",
    "HeadFinetuneConfig",
    "IA3StrategyConfig",
    "InContextConfig",
    "L2Method",
    "LoraStrategyConfig",
    "LwfMethod",
    "NaiveMethod",
    "NerAdapterConfig",
    "NerBitFitConfig",
    "NerHeadFinetuneConfig",
    "NerInContextConfig",
    "NerLoraConfig",
    "NerOptions",
    "NerPromptingConfig",
    "NerZeroShotConfig",
    "ParaphraseConfig",
    "PerTaskAdapterMethod",
    "PerTaskLoraMethod",
    "PrefixTuningStrategyConfig",
    "PromptConfig",
    "PromptFinetuneConfig",
    "PromptSearchConfig",
    "PromptTuningStrategyConfig",
    "QAHeadFinetuneConfig",
    "QALoraConfig",
    "RangeSpace",
    "RelationAdapterConfig",
    "RelationBitFitConfig",
    "RelationHeadFinetuneConfig",
    "RelationLoraConfig",
    "RelationOptions",
    "ReplayMethod",
    "SearchSpace",
    "Shots",
    "StrategyBase",
    "Strict",
    "SupervisedFinetuneBase",
    "Task",
    "TargetModules",
    "TrainingConfig",
    "TrainingOptions",
    "UpdateMethod",
    "ZeroShotConfig",
    "apply_overrides",
    "load_config",
    "load_continual_config",
    "option",
    "parse_strategy",
    "strategy_configs",
    "training_options",
    "validate_config",
    "validate_continual_config",
]
