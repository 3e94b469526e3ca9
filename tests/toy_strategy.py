"""A strategy written the way a contributor would add one: this module (its config and its class) plus one
registry entry (``ENTRY``). Nearest centroid: each label's mean sentence embedding is a row of a linear
head (logits = x·c - |c|²/2, i.e. minus half the squared distance up to a constant), so the model is an
ordinary encoder + linear head that taskfit's export already knows how to write."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from taskfit.config import StrategyBase
from taskfit.registry import StrategyEntry
from taskfit.strategies.base import count_parameters, probs_to_predictions, write_strategy_file
from taskfit.strategies.head_finetune import EncoderClassifier


class NearestCentroidConfig(StrategyBase):
    name: Literal["nearest-centroid"]
    backbone: str = "minilm"
    max_length: int = 64


class NearestCentroid:
    def __init__(self, config: NearestCentroidConfig, ctx, saved_dir: Path | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.config, self.ctx, self.log = config, ctx, []
        source = saved_dir or config.backbone  # a saved run reloads its own copy of the encoder
        encoder = AutoModel.from_pretrained(source)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = EncoderClassifier(encoder, len(ctx.labels), 0.0, "mean").eval()
        self.model.requires_grad_(False)

    def _batch(self, examples) -> dict:
        enc = self.tokenizer(
            [e.text for e in examples],
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    @torch.no_grad()
    def fit(self, train, dev) -> None:
        features = self.model.features(**self._batch(train))  # (N, H)
        centroids = torch.stack(
            [
                features[[i for i, e in enumerate(train) if e.label == label]].mean(0)
                for label in self.ctx.labels
            ]
        )  # (C, H)
        self.model.head.weight.copy_(centroids)
        self.model.head.bias.copy_(-0.5 * (centroids**2).sum(-1))
        self.log.append({"event": "centroids", "examples": len(train)})

    @torch.no_grad()
    def predict(self, examples):
        return probs_to_predictions(self.model(**self._batch(examples)), self.ctx.labels)

    def trainable_parameters(self) -> tuple[int, int]:
        head = sum(p.numel() for p in self.model.head.parameters())  # fitted, though not by gradients
        return head, count_parameters(self.model)[1]

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_model

        directory.mkdir(parents=True, exist_ok=True)
        self.model.encoder.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        save_model(self.model, str(directory / "centroids.safetensors"))
        write_strategy_file(directory, self.config, self.ctx)

    @classmethod
    def load(cls, directory: Path, config, ctx, saved: dict) -> NearestCentroid:
        from safetensors.torch import load_model

        strategy = cls(config, ctx, saved_dir=directory)
        load_model(strategy.model, str(directory / "centroids.safetensors"))
        return strategy


ENTRY = StrategyEntry(
    "classification",
    "nearest-centroid",
    NearestCentroidConfig,
    "toy_strategy:NearestCentroid",
    kinds=("encoder",),
    export="full",
)
