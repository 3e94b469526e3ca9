"""Sequence classification on an encoder's (or a causal LM's) pooled states: a linear head times a tuning
method (``strategies.tuning``): head-finetune is full fine-tuning, lora/ia3/prompt-tuning/prefix-tuning/bitfit/
adapter the parameter-efficient ones (the registry entry's ``options["tuning"]``). All train with AdamW, linear
warm-up and decay, weight decay, dropout, gradient clipping and early stopping on the dev set (best epoch
restored). ``TrainedEncoder`` is what every trained task head (NER, relation, extractive QA) shares.

head-finetune's run folder holds the whole fine-tuned model as safetensors plus the encoder config and
tokenizer, so it reloads without the original backbone; the others save only what they trained.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from taskfit.config import EncoderTrainingConfig
from taskfit.data.readers import Example
from taskfit.models.backbones import resolve_device
from taskfit.models.embeddings import mean_pool
from taskfit.strategies.base import (
    Context,
    ExtraLoss,
    Predictions,
    balanced_class_weights,
    count_parameters,
    probs_to_predictions,
    write_strategy_file,
)
from taskfit.strategies.tuning import WEIGHTS_FILE, TuningMethod, tuning_method, tuning_of
from taskfit.training.loop import accuracy, fit_whole_model
from taskfit.training.optim import adamw

__all__ = [
    "WEIGHTS_FILE",
    "EncoderClassifier",
    "HeadFinetune",
    "TrainedEncoder",
    "pad_rows",
    "resolve_pooling",
]


def pad_rows(tokenizer, rows: list[dict[str, list[int]]], device) -> dict[str, torch.Tensor]:
    """The tokenizer's own padding of a batch (its side and pad values), from token ids kept per example: what
    ``tokenizer(texts, padding=True)`` returns, without tokenising the texts again."""
    values = {
        "input_ids": tokenizer.pad_token_id,
        "attention_mask": 0,
        "token_type_ids": tokenizer.pad_token_type_id,
    }
    width = max(len(r["input_ids"]) for r in rows)
    left = tokenizer.padding_side == "left"
    out = {}
    for k in rows[0]:
        fill = [values[k]]
        padded = [
            fill * (width - len(r[k])) + r[k] if left else r[k] + fill * (width - len(r[k])) for r in rows
        ]
        out[k] = torch.tensor(padded, dtype=torch.long).to(device)
    return out


class EncoderClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float, pooling: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = resolve_pooling(pooling, encoder)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.head(self.dropout(self.features(input_ids, attention_mask, token_type_ids)))  # (B, C)

    def features(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """The pooled text representation the head reads (continual learning puts several heads on it)."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, **extra
        ).last_hidden_state  # (B, T, H); with prompt tuning (B, V + T, H), V virtual tokens first
        hidden = hidden[:, hidden.shape[1] - attention_mask.shape[1] :]  # pool the real tokens only
        if self.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)  # (B, H)
        elif (
            self.pooling == "last"
        ):  # a causal LM's last real token has seen the whole text (either padding side)
            last = (attention_mask * torch.arange(attention_mask.shape[1], device=hidden.device)).argmax(1)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            pooled = hidden[:, 0]
        return pooled  # (B, H)


def resolve_pooling(pooling: str, encoder: nn.Module) -> str:
    if pooling != "auto":
        return pooling
    config = getattr(encoder, "config", None)
    causal = getattr(config, "is_decoder", False) or any(
        a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or [])
    )
    return "last" if causal else "mean"


class TrainedEncoder:
    """A task head on a backbone, trained by a tuning method: what the classification head, the NER tagger and
    the relation and span heads share (building, the optimiser, counting, saving and reloading).

    ``tuning`` is a tuning method, its name, or None for the one the registry entry names. A saved run is
    rebuilt by the same constructor with ``saved_dir``: the tuning method puts its weights back.
    """

    def __init__(
        self,
        config: EncoderTrainingConfig,
        ctx: Context,
        saved_dir: Path | None = None,
        tuning: TuningMethod | str | None = None,
    ) -> None:
        self.config, self.ctx, self.log = config, ctx, []
        if tuning is None or isinstance(tuning, str):
            tuning = tuning_method(tuning or tuning_of(config), config)
        self.tuning = tuning
        encoder, self.tokenizer = tuning.backbone(config, ctx, saved_dir)
        torch.manual_seed(ctx.seed)  # the head's initialisation depends on the seed only
        self.model = self.build_model(encoder)
        if saved_dir is None:
            tuning.adapt(self.model, self.log, self.new_tokens())
        else:
            tuning.restore(self.model, saved_dir, self.log, self.new_tokens())
        self.device = resolve_device(ctx.backbones.device)
        self.model.to(self.device)

    def build_model(self, encoder: nn.Module) -> nn.Module:
        """The backbone with the task's head (a module with ``encoder`` and ``head``)."""
        raise NotImplementedError

    def new_tokens(self) -> list[int]:
        """Vocabulary rows the task added, which must train whatever the tuning method freezes."""
        return []

    def saved_fields(self) -> dict:
        """What strategy.json holds besides the config, labels and prompt (e.g. the task)."""
        return {}

    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay, head = [], [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("head."):
                head.append(p)
            elif p.ndim < 2:  # biases and LayerNorm weights: no weight decay
                no_decay.append(p)
            else:
                decay.append(p)
        c = self.config
        return adamw(
            [
                {"params": decay, "lr": c.lr, "weight_decay": c.weight_decay},
                {"params": no_decay, "lr": c.lr, "weight_decay": 0.0},
                {"params": head, "lr": c.head_lr, "weight_decay": c.weight_decay},
            ],
            fused=self.ctx.run.fused_optimizer,
        )

    def trainable_parameters(self) -> tuple[int, int]:
        return count_parameters(self.model)

    def save(self, directory: Path) -> None:
        self.tuning.save(self.model, self.tokenizer, directory)
        write_strategy_file(directory, self.config, self.ctx, self.saved_fields())

    @classmethod
    def load(cls, directory: Path, config, ctx: Context, saved: dict):
        return cls(config, ctx, saved_dir=directory)


class HeadFinetune(TrainedEncoder):
    """Sequence classification: a linear head on the pooled states, cross-entropy on the labels."""

    dev_metric = "dev_accuracy"  # what dev_score measures, as logged; early stopping maximises it
    # added to every batch's loss when set (an incremental update's continual method)
    extra_loss: ExtraLoss | None = None

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return EncoderClassifier(encoder, len(self.ctx.labels), self.config.dropout, self.config.pooling)

    def with_extra_loss(self, loss: torch.Tensor, batch: list) -> torch.Tensor:
        extra = self.extra_loss
        return loss if extra is None or (term := extra(batch)) is None else loss + term

    def dev_score(self, examples: list[Example]) -> float:
        return accuracy(self.predict(examples).labels, examples)

    # While fitting: each example's token ids by id(example), tokenised on first use and padded per batch, so
    # that the training and dev sets are tokenised once per cell rather than once per epoch. The entry holds
    # the example too, so that its id cannot be reused by another object while the cache lives.
    _encoded: dict[int, tuple[Example, dict[str, list[int]]]] | None = None

    def _batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Padded to the longest example in the batch (dynamic padding), not to a fixed length."""
        keys = ("input_ids", "attention_mask", "token_type_ids")
        if self.tuning.virtual_tokens:  # peft ignores token types with virtual tokens (and warns each call)
            keys = keys[:2]
        cache = self._encoded
        if cache is None:
            enc = self._tokenize(examples, padding=True, return_tensors="pt")
            return {k: v.to(self.device) for k, v in enc.items() if k in keys}
        new = list({id(e): e for e in examples if id(e) not in cache}.values())
        if new:
            enc = self._tokenize(new)
            for i, e in enumerate(new):
                cache[id(e)] = (e, {k: v[i] for k, v in enc.items() if k in keys})
        return pad_rows(self.tokenizer, [cache[id(e)][1] for e in examples], self.device)

    def _tokenize(self, examples: list[Example], **kwargs):
        pair = [e.text_pair for e in examples] if examples[0].text_pair is not None else None
        return self.tokenizer(
            [e.text for e in examples], pair, truncation=True, max_length=self.config.max_length, **kwargs
        )

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        c = self.config
        label_index = {lab: i for i, lab in enumerate(self.ctx.labels)}
        weight = None
        if c.class_weight == "balanced":
            weight = balanced_class_weights(train, list(self.ctx.labels)).to(self.device)
        loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=c.label_smoothing)

        def batch_loss(batch: list[Example]) -> torch.Tensor:
            targets = torch.tensor([label_index[e.label] for e in batch], device=self.device)
            return self.with_extra_loss(loss_fn(self.model(**self._batch(batch)), targets), batch)

        self._encoded = {}
        try:
            fit_whole_model(self, self._optimizer(), batch_loss, train, dev, self.dev_score, self.dev_metric)
        finally:
            self._encoded = None

    @torch.no_grad()
    def predict(self, examples: list[Example], batch_size: int = 64) -> Predictions:
        self.model.eval()
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].text))
        logits = torch.empty(len(examples), len(self.ctx.labels))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            logits[idx] = self.model(**self._batch([examples[i] for i in idx])).float().cpu()
        return probs_to_predictions(logits, self.ctx.labels)
