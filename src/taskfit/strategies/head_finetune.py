"""head-finetune: encoder + linear head on mean-pooled states; full fine-tuning with AdamW, linear warm-up
and decay, weight decay, dropout, gradient clipping and early stopping on the dev set (best epoch restored).

The run folder holds the whole fine-tuned model as safetensors plus the encoder config and tokenizer, so it
reloads without the original backbone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from taskfit.config import EncoderTrainingConfig, HeadFinetuneConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.io import save_safetensors_atomic
from taskfit.models.backbones import load_backbone, resolve_device
from taskfit.models.embeddings import mean_pool
from taskfit.strategies.base import (
    Context,
    Predictions,
    count_parameters,
    probs_to_predictions,
    write_strategy_file,
)
from taskfit.training.loop import accuracy, fit_whole_model

WEIGHTS_FILE = "model.safetensors"


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


def freeze(model: EncoderClassifier, embeddings: bool, bottom_layers: int) -> None:
    encoder = model.encoder
    if embeddings:
        for p in encoder.get_input_embeddings().parameters():
            p.requires_grad_(False)
        emb_module = getattr(encoder, "embeddings", None)
        if emb_module is not None:  # BERT-style: positions, token types and their LayerNorm too
            for p in emb_module.parameters():
                p.requires_grad_(False)
    if bottom_layers:
        layers = _encoder_layers(encoder)
        if bottom_layers > len(layers):
            raise TaskfitError(
                f"freeze_layers={bottom_layers}, but the encoder has only {len(layers)} layers"
            )
        for layer in layers[:bottom_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)


def _encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    for path in ("encoder.layer", "layers", "transformer.layer", "h"):
        obj = encoder
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise TaskfitError(f"cannot find the layer list of {type(encoder).__name__} to freeze")


class HeadFinetune:
    uses_training_data = True

    def __init__(self, config: EncoderTrainingConfig, ctx: Context, saved_dir: Path | None = None) -> None:
        self.config, self.ctx, self.log = config, ctx, []
        if saved_dir is None:
            backbone = load_backbone(config.backbone, "encoder", ctx.backbones.trust_remote_code, "cpu")
            encoder, self.tokenizer = backbone.model, backbone.tokenizer
        else:  # reloading a run: architecture from its config, weights from its safetensors
            from transformers import AutoConfig, AutoModel, AutoTokenizer

            encoder = AutoModel.from_config(AutoConfig.from_pretrained(saved_dir))
            self.tokenizer = AutoTokenizer.from_pretrained(saved_dir)
        torch.manual_seed(ctx.seed)  # the head's initialisation depends on the seed only
        self.model = self.build_model(encoder)
        self.adapt()
        self.device = resolve_device(ctx.backbones.device)
        self.model.to(self.device)

    def build_model(self, encoder: nn.Module) -> nn.Module:
        """The encoder with its task head; a task module overrides it (relation: entity-start states)."""
        return EncoderClassifier(encoder, len(self.ctx.labels), self.config.dropout, self.config.pooling)

    dev_metric = "dev_accuracy"  # what dev_score measures, as logged; early stopping maximises it

    def dev_score(self, examples: list[Example]) -> float:
        return accuracy(self.predict(examples).labels, examples)

    def adapt(self) -> None:
        """Decide what trains. Here: everything, less what the freeze options name."""
        c = self.config
        if c.freeze_encoder:
            self.model.encoder.requires_grad_(False)
        freeze(self.model, c.freeze_embeddings, c.freeze_layers)

    def _batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Padded to the longest example in the batch (dynamic padding), not to a fixed length."""
        pair = [e.text_pair for e in examples] if examples[0].text_pair is not None else None
        enc = self.tokenizer(
            [e.text for e in examples],
            pair,
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return {
            k: v.to(self.device)
            for k, v in enc.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }

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
        return torch.optim.AdamW(
            [
                {"params": decay, "lr": c.lr, "weight_decay": c.weight_decay},
                {"params": no_decay, "lr": c.lr, "weight_decay": 0.0},
                {"params": head, "lr": c.head_lr, "weight_decay": c.weight_decay},
            ]
        )

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        c = self.config
        label_index = {lab: i for i, lab in enumerate(self.ctx.labels)}
        loss_fn = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)

        def batch_loss(batch: list[Example]) -> torch.Tensor:
            targets = torch.tensor([label_index[e.label] for e in batch], device=self.device)
            loss = loss_fn(self.model(**self._batch(batch)), targets)
            extra = getattr(
                self, "extra_loss", None
            )  # an incremental update's continual method (from: RUN_DIR)
            return loss if extra is None or (term := extra(batch)) is None else loss + term

        fit_whole_model(self, self._optimizer(), batch_loss, train, dev, self.dev_score, self.dev_metric)

    @torch.no_grad()
    def predict(self, examples: list[Example], batch_size: int = 64) -> Predictions:
        self.model.eval()
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].text))
        logits = torch.empty(len(examples), len(self.ctx.labels))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            logits[idx] = self.model(**self._batch([examples[i] for i in idx])).float().cpu()
        return probs_to_predictions(logits, self.ctx.labels)

    def trainable_parameters(self) -> tuple[int, int]:
        return count_parameters(self.model)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.encoder.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        save_safetensors_atomic(self.model, directory / WEIGHTS_FILE)
        write_strategy_file(directory, self.config, self.ctx)

    @classmethod
    def load(cls, directory: Path, config: HeadFinetuneConfig, ctx: Context, saved: dict) -> HeadFinetune:
        from safetensors.torch import load_model

        strategy = cls(config, ctx, saved_dir=directory)
        load_model(strategy.model, str(directory / WEIGHTS_FILE), device=str(strategy.device))
        return strategy
