"""NER by token classification (task: ner): head-finetune, lora, bitfit, adapter.

A linear layer reads every token's hidden state and predicts its tag; the loss covers each word's first
token only (see ``models.token_alignment``). Encoders see both sides of a word; a causal LM (smollm2) sees
only its left context, which is what its hidden states hold. Everything else (what trains, the optimiser,
the loop with early stopping on dev entity F1, what is saved) is the tuning method the registry names
(``strategies.tuning``): the tagger only brings the model's head and the data path.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from taskfit.data.ner import NerExample, convert_tags, entities_of, from_text, tag_names
from taskfit.errors import TaskfitError
from taskfit.models.token_alignment import (
    IGNORE,
    Encoded,
    continuation,
    encode_words,
    merge_predictions,
    special_frame,
)
from taskfit.strategies.base import Context
from taskfit.strategies.head_finetune import TrainedEncoder, resolve_pooling
from taskfit.strategies.tuning import TuningMethod
from taskfit.training.loop import fit_whole_model


class TokenClassifier(nn.Module):
    """Backbone + dropout + linear layer on every position: (B, T) ids -> (B, T, tags) logits."""

    def __init__(self, encoder: nn.Module, n_tags: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_tags)

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, H)
        return self.head(self.dropout(hidden))  # (B, T, tags)


def new_stats() -> dict:
    """How the last encoded sentences met the tokenizer: windows, sentences split, words sharing a token."""
    return {"sentences": 0, "words": 0, "windows": 0, "sentences_split": 0, "shared_subtoken_words": 0}


class NerPredictions(list):
    """One entry per sentence: {"tags": word tags in the model's scheme, "entities": [Entity, ...]}."""


def label_position(label_token: str, encoder: nn.Module) -> str:
    """auto: a causal LM's word is read off its last token (it has seen the whole word), an encoder's first."""
    if label_token != "auto":
        return label_token
    return "last" if resolve_pooling("auto", encoder) == "last" else "first"


def as_sentence(example) -> NerExample:
    """A prediction request is plain text: split it into words (CJK characters, words, punctuation)."""
    if isinstance(example, NerExample) and example.tokens:
        return example
    return from_text(example.text, example.source)


class NerTagger(TrainedEncoder):
    """A tag layer on every token's hidden state, trained by the registry's tuning method (head-finetune:
    full, lora, bitfit, adapter)."""

    dev_metric = "dev_f1"

    def __init__(
        self, config, ctx: Context, saved_dir: Path | None = None, tuning: TuningMethod | str | None = None
    ) -> None:
        self.tags = tag_names(list(ctx.labels), config.scheme)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.inside_id = {  # B-X (and E-/S-) -> I-X, for label_all_subtokens
            i: self.tag_index.get("I-" + t.partition("-")[2], i) for i, t in enumerate(self.tags) if t != "O"
        }
        super().__init__(config, ctx, saved_dir, tuning)
        self.tokenizer.padding_side = "right"  # causal LMs: positions count from the left, no shift
        self.frame = special_frame(self.tokenizer)
        self.stats = new_stats()

    def build_model(self, encoder: nn.Module) -> nn.Module:
        self.position = label_position(self.config.label_token, encoder)
        # the draws of the sentence classifier's head that earlier versions built (and dropped) first: the
        # same seed keeps giving the same tag layer, so results stay comparable across versions
        nn.Linear(encoder.config.hidden_size, len(self.ctx.labels))
        return TokenClassifier(encoder, len(self.tags), self.config.dropout)

    def saved_fields(self) -> dict:
        return {"task": "ner", "tags": self.tags}

    def encode(self, example: NerExample, labelled: bool) -> Encoded:
        c = self.config
        tag_ids = None
        if labelled:
            tag_ids = [self.tag_index[t] for t in convert_tags(example.tags, c.scheme)]
        encoded = encode_words(
            self.tokenizer,
            example.text,
            example.spans,
            tag_ids,
            c.max_length,
            c.stride,
            c.label_all_subtokens,
            self.inside_id,
            self.frame,
            self.position,
        )
        self.stats["sentences"] += 1
        self.stats["windows"] += len(encoded.windows)
        self.stats["sentences_split"] += len(encoded.windows) > 1
        self.stats["shared_subtoken_words"] += len(encoded.shared)
        self.stats["words"] += encoded.n_words
        return encoded

    def _pad(self, windows) -> dict[str, torch.Tensor]:
        from transformers import DataCollatorForTokenClassification

        collate = DataCollatorForTokenClassification(self.tokenizer, label_pad_token_id=IGNORE)
        batch = collate([{"input_ids": w.input_ids, "labels": w.labels} for w in windows])
        return {
            k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")
        }

    def fit(self, train: list, dev: list) -> None:
        c = self.config
        for e in train:
            if not isinstance(e, NerExample) or not e.tags:
                raise TaskfitError(f"{e.source}: NER training needs tagged sentences (task: ner data)")
        self.stats = new_stats()
        windows = [w for e in train for w in self.encode(e, labelled=True).windows]
        self.log.append({"event": "alignment", **self.stats})
        loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE, label_smoothing=c.label_smoothing)

        def batch_loss(batch) -> torch.Tensor:
            inputs = self._pad(batch)
            labels = inputs.pop("labels")
            logits = self.model(**inputs)  # (B, T, tags)
            return loss_fn(logits.flatten(0, 1), labels.flatten())

        fit_whole_model(self, self._optimizer(), batch_loss, windows, dev, self.dev_score, self.dev_metric)

    def dev_score(self, examples: list) -> float:
        """Entity F1 on tagged sentences."""
        from taskfit.evaluation.ner_metrics import ner_metrics

        scheme = self.config.scheme
        predicted = self.predict(examples)
        gold = [convert_tags(e.tags, scheme) for e in examples]
        return ner_metrics(gold, [p["tags"] for p in predicted], scheme)["f1"]

    @torch.no_grad()
    def predict(self, examples: list, batch_size: int = 32) -> NerPredictions:
        self.model.eval()
        sentences = [as_sentence(e) for e in examples]
        self.stats = new_stats()  # after predict: how these sentences were windowed
        encoded = [self.encode(s, labelled=False) for s in sentences]
        flat = [(i, j) for i, enc in enumerate(encoded) for j in range(len(enc.windows))]
        flat.sort(key=lambda ij: len(encoded[ij[0]].windows[ij[1]].input_ids))
        argmax: dict[tuple[int, int], list[int]] = {}
        for start in range(0, len(flat), batch_size):
            chunk = flat[start : start + batch_size]
            inputs = self._pad([encoded[i].windows[j] for i, j in chunk])
            inputs.pop("labels", None)
            best = self.model(**inputs).argmax(-1).cpu().tolist()  # (B, T)
            for (i, j), row in zip(chunk, best):
                argmax[(i, j)] = row
        out = NerPredictions()
        for i, (s, enc) in enumerate(zip(sentences, encoded)):
            ids = merge_predictions(enc, [argmax[(i, j)] for j in range(len(enc.windows))])
            tags = continuation([self.tags[t] for t in ids], enc)
            out.append({"tags": tags, "entities": entities_of(s, tags)})
        return out
