"""task: relation strategies. The relation head (the hidden states at the two entity-start markers,
concatenated, or one pooled state) times a tuning method: head-finetune (full), lora, bitfit, adapter.

The markers ``[E1] [/E1] [E2] [/E2]`` are added to the tokenizer as special tokens with new embedding rows;
those rows train whatever the tuning method freezes (``TuningMethod.adapt``'s ``new_tokens``). Reading the
data, the markers in the text, windowing and the metrics are the task's (``taskfit.tasks.relation``).
"""

from __future__ import annotations

import torch
from torch import nn

from taskfit.data.readers import Example
from taskfit.models.embeddings import mean_pool
from taskfit.strategies.head_finetune import HeadFinetune, resolve_pooling
from taskfit.tasks.relation import MARKERS, as_relation, encode_relation, relation_metrics


class RelationClassifier(nn.Module):
    """Encoder + linear head on [h(E1); h(E2)] (entity start) or on one pooled state."""

    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float, entity_pooling: str, pooling: str):
        super().__init__()
        self.encoder = encoder
        self.entity_pooling = entity_pooling
        self.pooling = resolve_pooling(pooling, encoder)
        self.dropout = nn.Dropout(dropout)
        width = 2 if entity_pooling == "entity-start" else 1
        self.head = nn.Linear(width * encoder.config.hidden_size, n_labels)

    def forward(self, input_ids, attention_mask, head_index, tail_index) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, H)
        if self.entity_pooling == "entity-start":
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            pooled = torch.cat([hidden[rows, head_index], hidden[rows, tail_index]], dim=-1)  # (B, 2H)
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = mean_pool(hidden, attention_mask)  # (B, H)
        return self.head(self.dropout(pooled))  # (B, C)


def add_markers(tokenizer, encoder: nn.Module) -> list[int]:
    """Add the markers as special tokens (never split or lower-cased) and give them embedding rows."""
    tokenizer.add_tokens(list(MARKERS), special_tokens=True)
    if encoder.get_input_embeddings().num_embeddings < len(tokenizer):
        # mean_resizing (transformers' default) fits a covariance over the whole vocabulary: seconds per load
        # for 4 rows. The model's own (seeded) initialisation is what relation papers used.
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return tokenizer.convert_tokens_to_ids(list(MARKERS))


class RelationStrategy(HeadFinetune):
    """The classification head's loss, predictions and loop, with the relation model, batches and dev metric."""

    dev_metric = "dev_micro_f1"

    def build_model(self, encoder: nn.Module) -> nn.Module:
        self.marker_ids = add_markers(self.tokenizer, encoder)
        c = self.config
        return RelationClassifier(encoder, len(self.ctx.labels), c.dropout, c.entity_pooling, c.pooling)

    def new_tokens(self) -> list[int]:
        return list(self.marker_ids)

    def saved_fields(self) -> dict:
        return {"task": "relation"}  # reloads as this task

    def _batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        encoded = [
            encode_relation(self.tokenizer, as_relation(e), self.config.max_length, self.marker_ids)
            for e in examples
        ]
        width = max(len(ids) for ids, _, _ in encoded)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, (ids, _, _) in enumerate(encoded):  # right padding: the marker positions stay valid
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": mask.to(self.device),
            "head_index": torch.tensor([h for _, h, _ in encoded], device=self.device),
            "tail_index": torch.tensor([t for _, _, t in encoded], device=self.device),
        }

    def dev_score(self, examples: list[Example]) -> float:
        predicted = self.predict(examples).labels
        gold = [e.label for e in examples]
        return relation_metrics(gold, predicted, self.ctx.labels, self.ctx.no_relation_label)["micro_f1"]
