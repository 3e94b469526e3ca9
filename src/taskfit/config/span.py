"""Strategy configs of the span tasks on encoders: relation (entity-pair classification) and extractive-qa
(answer spans). Same names and settings as their classification counterparts, plus the task's own options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from taskfit.config.base import Strict, option
from taskfit.config.classification import (
    AdapterStrategyConfig,
    BitFitConfig,
    HeadFinetuneConfig,
    LoraStrategyConfig,
)

RELATION_CLASS_WEIGHT = Field(
    "none", description="balanced weighs each relation type's examples by n / (types x its count)"
)


class RelationOptions(Strict):
    """task: relation. Entity markers [E1] [/E1] [E2] [/E2] are inserted and trained as new tokens."""

    entity_pooling: Literal["entity-start", "pooled"] = Field(
        "entity-start",
        description="entity-start: the states at [E1] and [E2] concatenated (Baldini Soares et al. 2019); "
        "pooled: one pooled sentence state (see pooling)",
    )


class RelationHeadFinetuneConfig(HeadFinetuneConfig, RelationOptions):
    """Full fine-tuning of the encoder with an entity-start relation head."""

    class_weight: Literal["balanced", "none"] = RELATION_CLASS_WEIGHT  # as before issue 36


class RelationLoraConfig(LoraStrategyConfig, RelationOptions):
    """LoRA through peft; the marker embeddings train too (peft trainable_token_indices)."""

    class_weight: Literal["balanced", "none"] = RELATION_CLASS_WEIGHT  # as before issue 36


class RelationBitFitConfig(BitFitConfig, RelationOptions):
    """Bias terms, the marker embeddings and the head train."""

    class_weight: Literal["balanced", "none"] = RELATION_CLASS_WEIGHT  # as before issue 36


class RelationAdapterConfig(AdapterStrategyConfig, RelationOptions):
    """Houlsby adapters, the marker embeddings and the head train."""

    class_weight: Literal["balanced", "none"] = RELATION_CLASS_WEIGHT  # as before issue 36


class ExtractiveQAOptions(Strict):
    """task: extractive-qa. Long contexts are split into overlapping windows; the best span over all wins."""

    class_weight: Literal["none"] = Field("none", description="label classification only (not spans)")

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


class QALoraConfig(ExtractiveQAOptions, LoraStrategyConfig):
    """LoRA through peft on the encoder; the start/end head trains in full."""

    lr: float = option("lr", 1e-3)
