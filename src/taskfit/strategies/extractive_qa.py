"""task: extractive-qa strategies. A start/end span head on every token (as ``AutoModelForQuestionAnswering``)
times a tuning method: head-finetune (full) or lora. The windows over long contexts, choosing the best span
and the SQuAD metrics are the task's (``taskfit.tasks.extractive_qa``).
"""

from __future__ import annotations

import torch
from torch import nn

from taskfit.data.readers import Example
from taskfit.evaluation.squad import squad_metrics
from taskfit.strategies.head_finetune import TrainedEncoder
from taskfit.tasks.extractive_qa import Answer, QAExample, Window, as_question, best_answers, make_windows
from taskfit.training.loop import fit_whole_model


class SpanQAModel(nn.Module):
    """Encoder + Linear(H, 2): start and end logits per token (BertForQuestionAnswering's head)."""

    def __init__(self, encoder: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        logits = self.head(self.dropout(hidden))  # (B, T, 2)
        return logits.masked_fill(attention_mask.unsqueeze(-1) == 0, -1e4)  # padding is never an answer


class SpanQA(TrainedEncoder):
    """Windows instead of texts, a span loss, SQuAD F1 on dev."""

    dev_metric = "dev_f1"

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return SpanQAModel(encoder, self.config.dropout)

    def saved_fields(self) -> dict:
        return {"task": "extractive-qa"}  # reloads as this task

    def _pad(self, windows: list[Window]) -> dict[str, torch.Tensor]:
        width = max(len(w.input_ids) for w in windows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(windows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(windows), width), dtype=torch.long)
        types = torch.zeros((len(windows), width), dtype=torch.long)
        for i, w in enumerate(windows):  # right padding keeps token positions = window positions
            ids[i, : len(w.input_ids)] = torch.tensor(w.input_ids)
            mask[i, : len(w.input_ids)] = 1
            if w.token_type_ids is not None:
                types[i, : len(w.input_ids)] = torch.tensor(w.token_type_ids)
        batch = {"input_ids": ids, "attention_mask": mask}
        if windows[0].token_type_ids is not None:
            batch["token_type_ids"] = types
        return {k: v.to(self.device) for k, v in batch.items()}

    def windows(self, examples: list[QAExample]) -> list[Window]:
        c = self.config
        return make_windows(self.tokenizer, examples, c.max_length, c.doc_stride)

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        c = self.config
        windows = self.windows([as_question(e) for e in train])
        loss_fn = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)

        def batch_loss(batch: list[Window]) -> torch.Tensor:
            logits = self.model(**self._pad(batch))  # (B, T, 2)
            starts = torch.tensor([w.start for w in batch], device=self.device)
            ends = torch.tensor([w.end for w in batch], device=self.device)
            return (loss_fn(logits[..., 0], starts) + loss_fn(logits[..., 1], ends)) / 2

        fit_whole_model(self, self._optimizer(), batch_loss, windows, dev, self.dev_score, self.dev_metric)

    @torch.no_grad()
    def predict(self, examples: list[Example], batch_size: int = 32) -> list[Answer]:
        self.model.eval()
        questions = [as_question(e) for e in examples]
        windows = self.windows(questions)
        logits: list[torch.Tensor] = []
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            out = self.model(**self._pad(chunk)).float().cpu()
            logits += [out[i, : len(w.input_ids)] for i, w in enumerate(chunk)]
        c = self.config
        return best_answers(questions, windows, logits, c.n_best, c.max_answer_length)

    def dev_score(self, examples: list[Example]) -> float:
        answers = self.predict(examples)
        return squad_metrics([a.text for a in answers], [[t for t, _ in e.answers] for e in examples])["f1"]
