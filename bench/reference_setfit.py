"""taskfit `contrastive` vs the `setfit` library on the same splits (run through bench/reference_setfit.sh).

Same backbone (all-MiniLM-L6-v2), same k-shot samples (taskfit's sampler), SetFit's own defaults on both
sides: 20 pair-generation iterations, 1 epoch, batch 16, body learning rate 2e-5, logistic-regression head.
taskfit runs in ``taskfit compare``'s default precision (``--precision auto``: bf16 autocast on a CPU with AMX,
fp32 elsewhere; ``no`` for fp32); setfit in its own default (fp32).
Prints per-seed accuracy and training time, then mean ± std and the time ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from taskfit.config import ContrastiveConfig, DataConfig
from taskfit.data.prepare import sample_splits
from taskfit.models.backbones import resolve
from taskfit.strategies import Context, build_strategy
from taskfit.tasks import load_pools
from taskfit.training.distributed import RunOptions
from taskfit.training.precision import autocast, resolve_precision


def run_taskfit(splits, seed, precision="auto"):
    precision = resolve_precision(precision, torch.device("cpu"))
    with autocast(precision, "cpu"):  # as a grid cell runs (compare.worker.run_cell)
        ctx = Context(splits.labels, seed=seed, run=RunOptions(mixed_precision=precision))
        strategy = build_strategy(ContrastiveConfig(name="contrastive", backbone="minilm"), ctx)
        started = time.perf_counter()
        strategy.fit(splits.train, [])
        seconds = time.perf_counter() - started
        preds = strategy.predict(splits.test).labels
    return float(np.mean([p == e.label for p, e in zip(preds, splits.test)])), seconds


def run_setfit(splits, seed):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(resolve("minilm"))
    train = Dataset.from_dict(
        {"text": [e.text for e in splits.train], "label": [e.label for e in splits.train]}
    )
    args = TrainingArguments(
        batch_size=16,
        num_epochs=1,
        num_iterations=20,
        body_learning_rate=2e-5,
        seed=seed,
        output_dir=tempfile.mkdtemp(prefix="setfit-bench-"),  # its default, ./checkpoints, lands in the repo
        save_strategy="no",
        report_to="none",
    )
    trainer = Trainer(model=model, args=args, train_dataset=train)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    preds = model.predict([e.text for e in splits.test])
    return float(np.mean([str(p) == e.label for p, e in zip(preds, splits.test)])), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mr")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument("--precision", default="auto", choices=["auto", "no", "bf16"])
    args = parser.parse_args()
    data = DataConfig(dataset=args.dataset, shots=args.shots, test_limit=args.test_limit)
    pools = load_pools(data)
    ours, theirs = [], []
    for seed in map(int, args.seeds.split(",")):
        splits = sample_splits(pools, data, seed)
        ours.append(run_taskfit(splits, seed, args.precision))
        theirs.append(run_setfit(splits, seed))
        print(
            f"seed {seed}: taskfit contrastive {ours[-1][0]:.3f} ({ours[-1][1]:.1f} s), "
            f"setfit {theirs[-1][0]:.3f} ({theirs[-1][1]:.1f} s)",
            flush=True,
        )
    for name, rows in (("taskfit contrastive", ours), ("setfit", theirs)):
        accs = [r[0] for r in rows]
        print(
            f"{name}: accuracy {statistics.mean(accs):.3f} ± {statistics.stdev(accs) if len(accs) > 1 else 0:.3f}, "
            f"train {statistics.mean(r[1] for r in rows):.1f} s"
        )
    print(
        f"train time setfit / taskfit: {statistics.mean(r[1] for r in theirs) / statistics.mean(r[1] for r in ours):.2f}x"
    )


if __name__ == "__main__":
    main()
