"""The training loop every gradient-based strategy shares: AdamW with linear warm-up and decay, gradient
clipping, one dev evaluation per epoch, early stopping, and the best epoch restored at the end.

A strategy supplies what differs: the loss of a batch, the dev metric, and what to snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from taskfit.data.readers import Example


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int
    warmup_ratio: float
    max_grad_norm: float
    patience: int
    seed: int


def fit_epochs(
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    batch_loss: Callable[[list[Example]], torch.Tensor],
    train: list[Example],
    dev: list[Example],
    dev_accuracy: Callable[[list[Example]], float],
    snapshot: Callable[[], dict[str, torch.Tensor]],
    restore: Callable[[dict[str, torch.Tensor]], None],
    set_train_mode: Callable[[], None],
    settings: LoopSettings,
    log: list[dict],
    advance: Callable[[int], None] = lambda n: None,
    evaluate_untrained: bool = False,
) -> None:
    """Train for up to ``settings.epochs``; with a dev set, stop after ``patience`` epochs without a better dev
    accuracy and restore the best snapshot. ``evaluate_untrained`` makes the starting model epoch 0, so that
    training is kept only when it beats it (prompt-based fine-tuning starts from a working zero-shot model)."""
    from transformers import get_linear_schedule_with_warmup

    s = settings
    generator = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)  # dropout masks
    steps_per_epoch = -(-len(train) // s.batch_size)
    total = steps_per_epoch * s.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total), total)
    best, best_state, best_epoch, stale = -1.0, None, 0, 0
    if dev and evaluate_untrained:
        best, best_state = dev_accuracy(dev), snapshot()
        log.append({"epoch": 0, "dev_accuracy": best})
    for epoch in range(1, s.epochs + 1):
        set_train_mode()
        started, losses = time.perf_counter(), []
        for idx in torch.randperm(len(train), generator=generator).split(s.batch_size):
            loss = batch_loss([train[i] for i in idx.tolist()])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            advance(1)
        record = {
            "epoch": epoch,
            "train_loss": sum(losses) / len(losses),
            "seconds": time.perf_counter() - started,
        }
        if dev:
            record["dev_accuracy"] = dev_accuracy(dev)
            if record["dev_accuracy"] > best:
                best, best_epoch, stale, best_state = record["dev_accuracy"], epoch, 0, snapshot()
            else:
                stale += 1
        log.append(record)
        if dev and stale >= s.patience:
            advance((s.epochs - epoch) * steps_per_epoch)
            break
    if best_state is not None:
        restore(best_state)
        log.append({"event": "restored_best", "epoch": best_epoch, "dev_accuracy": best})


def accuracy(predicted: list[str], examples: list[Example]) -> float:
    return sum(p == e.label for p, e in zip(predicted, examples)) / len(examples)
