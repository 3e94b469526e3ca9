"""contrastive: SetFit-style few-shot classification.

1. Contrastive fine-tuning of the sentence encoder on pairs built from the K shots: same-label pairs pulled
   towards cosine 1, different-label pairs towards 0 (SetFit's CosineSimilarityLoss).
2. A logistic-regression head (scikit-learn) on the tuned, L2-normalised mean-pooled embeddings.

Written here rather than depending on the `setfit` package, whose pins lag transformers releases; the
benchmark under bench/ compares the two on the same splits. The head is saved as plain tensors in
safetensors (coefficients, intercepts), never pickled.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from taskfit.config import ContrastiveConfig
from taskfit.data.readers import Example
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
from taskfit.strategies.head_finetune import pad_rows
from taskfit.training.dropout import cheap_dropout_masks, uses_cheap_masks
from taskfit.training.optim import adamw

ENCODER_FILE = "encoder.safetensors"
HEAD_FILE = "head.safetensors"


def make_pairs(
    examples: list[Example], iterations: int, seed: int, balanced: bool = False
) -> list[tuple[int, int, float]]:
    """Per iteration and anchor: one positive (same label) and one negative pair, as SetFit samples them.
    Every example anchors once per iteration; ``balanced``: every label anchors as often instead (the
    same number of anchors in all, each label's drawn in a seeded cycle through its examples), so that on
    27/13 data the minority label is not the other end of most pairs only."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_label.setdefault(e.label, []).append(i)  # type: ignore[arg-type]
    # each label's complement, computed once rather than per anchor and iteration
    others = {lab: [j for other, idx in by_label.items() if other != lab for j in idx] for lab in by_label}
    cycles = {lab: [] for lab in by_label}
    per_label = -(-len(examples) // len(by_label)) if by_label else 0

    equal = len({len(idx) for idx in by_label.values()}) <= 1  # already balanced: the pairs as before

    def anchors() -> list[int]:
        if not balanced or equal:
            return list(range(len(examples)))
        out = []
        for lab in sorted(by_label):
            for _ in range(per_label):
                if not cycles[lab]:
                    cycles[lab] = rng.sample(by_label[lab], len(by_label[lab]))
                out.append(cycles[lab].pop())
        return out

    pairs = []
    for _ in range(iterations):
        for i in anchors():
            label = examples[i].label
            same = [j for j in by_label[label] if j != i] or [i]  # type: ignore[index]
            pairs.append((i, rng.choice(same), 1.0))
            if others[label]:  # type: ignore[index]
                pairs.append((i, rng.choice(others[label]), 0.0))  # type: ignore[index]
    rng.shuffle(pairs)
    return pairs


class Contrastive:
    def __init__(self, config: ContrastiveConfig, ctx: Context, saved_dir: Path | None = None) -> None:
        self.config, self.ctx, self.log = config, ctx, []
        if saved_dir is None:
            backbone = load_backbone(config.backbone, "encoder", ctx.backbones.trust_remote_code, "cpu")
            self.encoder, self.tokenizer = backbone.model, backbone.tokenizer
        else:
            from transformers import AutoConfig, AutoModel, AutoTokenizer

            self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(saved_dir))
            self.tokenizer = AutoTokenizer.from_pretrained(saved_dir)
        self.device = resolve_device(ctx.backbones.device)
        self.encoder.to(self.device)
        self.coef = torch.zeros(len(ctx.labels), self.encoder.config.hidden_size)  # (C, H)
        self.intercept = torch.zeros(len(ctx.labels))  # (C,)

    def _embed(self, texts: list[str] | None = None, rows: list[dict] | None = None) -> torch.Tensor:
        """L2-normalised mean-pooled embeddings of texts, or of texts tokenised before (``rows``: token ids per
        text, padded here as the tokenizer pads)."""
        if rows is not None:
            enc = pad_rows(self.tokenizer, rows, self.device)
        else:
            enc = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
            ).to(self.device)
        hidden = self.encoder(**enc).last_hidden_state  # (B, T, H)
        return torch.nn.functional.normalize(
            mean_pool(hidden.float(), enc["attention_mask"]), dim=-1
        )  # (B, H)

    @torch.no_grad()
    def embed(self, examples: list[Example], batch_size: int = 64) -> torch.Tensor:
        self.encoder.eval()
        out = [
            self._embed([e.text for e in examples[i : i + batch_size]]).float().cpu()
            for i in range(0, len(examples), batch_size)
        ]
        return torch.cat(out)

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        from sklearn.linear_model import LogisticRegression
        from transformers import get_linear_schedule_with_warmup

        c = self.config
        torch.manual_seed(self.ctx.seed)
        balanced = c.class_weight == "balanced"
        pairs = make_pairs(train, c.num_iterations, self.ctx.seed, balanced)
        steps = -(-len(pairs) // c.batch_size) * c.epochs
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        optimizer = adamw(params, fused=self.ctx.run.fused_optimizer, lr=c.lr)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(c.warmup_ratio * steps), steps)
        advance = self.ctx.advance(f"{c.run_id} contrastive", steps)
        # each training text tokenised once (not once per pair and epoch), padded per batch
        enc = self.tokenizer([e.text for e in train], truncation=True, max_length=c.max_length)
        rows = [{k: v[i] for k, v in enc.items()} for i in range(len(train))]
        # this loop is not fit_epochs: it swaps in the cheap dropout masks itself (training/dropout.py)
        with cheap_dropout_masks(self.encoder, uses_cheap_masks(self.ctx.run.fast_dropout, self.device)):
            for epoch in range(1, c.epochs + 1):
                self.encoder.train()
                started, losses = time.perf_counter(), []
                for start in range(0, len(pairs), c.batch_size):
                    batch = pairs[start : start + c.batch_size]
                    # each text of the batch encoded once, however many of its pairs it is in (16 pairs
                    # drawn from a few dozen texts repeat about a third of them)
                    unique = list(dict.fromkeys([i for i, _, _ in batch] + [j for _, j, _ in batch]))
                    at = {u: n for n, u in enumerate(unique)}
                    embedded = self._embed(rows=[rows[u] for u in unique])  # (U, H)
                    left = embedded[[at[i] for i, _, _ in batch]]
                    right = embedded[[at[j] for _, j, _ in batch]]
                    target = torch.tensor([t for _, _, t in batch], device=self.device)
                    loss = torch.nn.functional.mse_loss((left * right).sum(-1), target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), c.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    losses.append(loss.detach())  # read once per epoch: no host sync per step
                    advance(1)
                self.log.append(
                    {
                        "epoch": epoch,
                        "pairs": len(pairs),
                        "train_loss": torch.stack(losses).double().mean().item(),
                        "seconds": time.perf_counter() - started,
                    }
                )
        features = self.embed(train).numpy()
        labels = [self.ctx.labels.index(e.label) for e in train]
        head = LogisticRegression(
            C=c.head_c, max_iter=1000, class_weight="balanced" if balanced else None
        ).fit(features, labels)
        coef, intercept = (
            torch.tensor(head.coef_, dtype=torch.float),
            torch.tensor(head.intercept_, dtype=torch.float),
        )
        if coef.shape[0] == 1:  # binary: sklearn keeps one row for class 1; make it a 2-way softmax
            coef, intercept = torch.cat([-coef / 2, coef / 2]), torch.cat([-intercept / 2, intercept / 2])
        self.coef = torch.zeros(len(self.ctx.labels), coef.shape[1])
        self.intercept = torch.full((len(self.ctx.labels),), -1e4)  # labels absent from train never win
        self.coef[head.classes_], self.intercept[head.classes_] = coef, intercept
        if dev:
            preds = self.predict(dev)
            self.log.append({"dev_accuracy": sum(p == e.label for p, e in zip(preds.labels, dev)) / len(dev)})

    def predict(self, examples: list[Example]) -> Predictions:
        logits = self.embed(examples) @ self.coef.T + self.intercept  # (N, C)
        return probs_to_predictions(logits, self.ctx.labels)

    def trainable_parameters(self) -> tuple[int, int]:
        trainable, total = count_parameters(self.encoder)
        head = self.coef.numel() + self.intercept.numel()
        return trainable + head, total + head

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        save_safetensors_atomic(self.encoder, directory / ENCODER_FILE)
        save_file(
            {"coef": self.coef.contiguous(), "intercept": self.intercept.contiguous()},
            str(directory / HEAD_FILE),
        )
        write_strategy_file(directory, self.config, self.ctx)

    @classmethod
    def load(cls, directory: Path, config: ContrastiveConfig, ctx: Context, saved: dict) -> Contrastive:
        from safetensors.torch import load_model

        strategy = cls(config, ctx, saved_dir=directory)
        load_model(strategy.encoder, str(directory / ENCODER_FILE), device=str(strategy.device))
        head = load_file(str(directory / HEAD_FILE))
        strategy.coef, strategy.intercept = head["coef"], head["intercept"]
        return strategy
