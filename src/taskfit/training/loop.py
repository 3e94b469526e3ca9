"""The training loop every gradient-based strategy shares: AdamW with linear warm-up and decay, gradient
clipping, one dev evaluation per epoch, early stopping, and the best epoch restored at the end.

A strategy supplies what differs: the loss of a batch, the dev metric, and what to snapshot.
"""

from __future__ import annotations

import math
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
    grad_accumulation: int = 1  # batches per optimiser step
    metric: str = "dev_accuracy"  # what the dev callback measures, as logged
    higher_is_better: bool = True


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
    make_batches: Callable[[torch.Generator], list[list[int]]] | None = None,
) -> None:
    """Train for up to ``settings.epochs``; with a dev set, stop after ``patience`` epochs without a better dev
    accuracy and restore the best snapshot. ``evaluate_untrained`` makes the starting model epoch 0, so that
    training is kept only when it beats it (prompt-based fine-tuning starts from a working zero-shot model).
    ``make_batches`` orders an epoch's examples into batches of indices (default: a seeded shuffle)."""
    from transformers import get_linear_schedule_with_warmup

    s = settings
    generator = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)  # dropout masks
    make_batches = make_batches or (
        lambda g: [b.tolist() for b in torch.randperm(len(train), generator=g).split(s.batch_size)]
    )
    steps_per_epoch = len(make_batches(torch.Generator().manual_seed(s.seed)))
    total = -(-steps_per_epoch // s.grad_accumulation) * s.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total), total)
    sign = 1.0 if s.higher_is_better else -1.0  # compare as "higher is better"
    best, best_state, best_epoch, stale = -math.inf, None, 0, 0
    if dev and evaluate_untrained:
        value = dev_accuracy(dev)
        best, best_state = sign * value, snapshot()
        log.append({"epoch": 0, s.metric: value})
    for epoch in range(1, s.epochs + 1):
        set_train_mode()
        started, losses = time.perf_counter(), []
        batches = make_batches(generator)
        optimizer.zero_grad(set_to_none=True)
        for step, idx in enumerate(batches, start=1):
            loss = batch_loss([train[i] for i in idx])
            (loss / s.grad_accumulation).backward()
            losses.append(loss.item())
            if step % s.grad_accumulation == 0 or step == len(batches):
                torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            advance(1)
        record = {
            "epoch": epoch,
            "train_loss": sum(losses) / len(losses),
            "seconds": time.perf_counter() - started,
        }
        if dev:
            record[s.metric] = dev_accuracy(dev)
            if sign * record[s.metric] > best:
                best, best_epoch, stale, best_state = sign * record[s.metric], epoch, 0, snapshot()
            else:
                stale += 1
        log.append(record)
        if dev and stale >= s.patience:
            advance((s.epochs - epoch) * steps_per_epoch)
            break
    if best_state is not None:
        restore(best_state)
        log.append({"event": "restored_best", "epoch": best_epoch, s.metric: sign * best})


def accuracy(predicted: list[str], examples: list[Example]) -> float:
    return sum(p == e.label for p, e in zip(predicted, examples)) / len(examples)
