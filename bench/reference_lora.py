"""taskfit `lora` and `head-finetune` vs the field's reference stack (transformers.Trainer, + peft LoRA), side by side.

Same backbone (all-MiniLM-L6-v2), same k-shot splits (taskfit's sampler), same hyperparameters: LoRA r=8,
alpha=16, dropout 0.1 on query/key/value; AdamW lr 5e-3 (head too), weight decay 0.01, linear schedule with
10% warm-up, batch 8, 10 epochs, no model selection (last epoch), max length 256. The reference is set up as
its documentation recommends: AutoModelForSequenceClassification, peft task_type SEQ_CLS (so the classifier
trains), a tokenized `datasets.Dataset`, DataCollatorWithPadding (dynamic padding), report_to none, and
Trainer's default optimizer (adamw_torch). `--strategies head-finetune` compares full fine-tuning the same way
(no peft; lr 5e-5 for the whole model on both sides, taskfit's head included).

taskfit runs in the precision ``taskfit compare`` uses by default (``--precision auto``: bf16 autocast on a CPU
with AMX, fp32 elsewhere; ``--precision no`` for fp32); the reference runs with Trainer's default (fp32) and,
with ``--reference-bf16``, also with ``bf16=True`` (Trainer's own autocast), so the ratio is given both ways.

Usage:  .venv/bin/python bench/reference_lora.py [--dataset mr] [--shots 16] [--seeds 0,1,2,3,4]
            [--strategies lora,head-finetune] [--test-limit 500] [--precision auto|no] [--reference-bf16]
Prints one line per seed and a summary: accuracy mean ± std of each, and the training-throughput ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from taskfit.config import DataConfig, HeadFinetuneConfig, LoraStrategyConfig
from taskfit.data.prepare import sample_splits
from taskfit.models.backbones import resolve
from taskfit.strategies import Context, build_strategy
from taskfit.tasks import load_pools
from taskfit.training.distributed import RunOptions
from taskfit.training.precision import autocast, resolve_precision

EPOCHS, BATCH = 10, 8
LR = {"lora": 5e-3, "head-finetune": 5e-5}


def run_taskfit(splits, seed, strategy="lora", precision="auto", freeze_embeddings=False):
    lr = LR[strategy]
    config = LoraStrategyConfig if strategy == "lora" else HeadFinetuneConfig
    extra = {"freeze_embeddings": True} if freeze_embeddings else {}
    cfg = config(
        name=strategy,
        backbone="minilm",
        lr=lr,
        head_lr=lr,
        epochs=EPOCHS,
        batch_size=BATCH,
        patience=EPOCHS,
        **extra,
    )
    precision = resolve_precision(precision, torch.device("cpu"))
    with autocast(precision, "cpu"):  # as a grid cell runs (compare.worker.run_cell)
        strategy = build_strategy(
            cfg, Context(splits.labels, seed=seed, run=RunOptions(mixed_precision=precision))
        )
        started = time.perf_counter()
        strategy.fit(splits.train, [])  # no dev: no per-epoch evaluation, no selection, like the reference
        seconds = time.perf_counter() - started
        preds = strategy.predict(splits.test).labels
    return np.mean([p == e.label for p, e in zip(preds, splits.test)]), seconds


def run_reference(splits, seed, strategy="lora", bf16=False):
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(seed)
    path = resolve("minilm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    index = {lab: i for i, lab in enumerate(splits.labels)}
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(index))
    if strategy == "lora":
        model = get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=8,
                lora_alpha=16,
                lora_dropout=0.1,
                target_modules=["query", "key", "value"],
            ),
        )

    def encode(examples):
        data = Dataset.from_dict(
            {"text": [e.text for e in examples], "label": [index[e.label] for e in examples]}
        )
        return data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=256), batched=True)

    args = TrainingArguments(
        output_dir="/tmp/taskfit-bench-trainer",
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=64,
        learning_rate=LR[strategy],
        weight_decay=0.01,
        warmup_steps=0.1,  # transformers 5: a float in [0, 1) is the warm-up ratio (warmup_ratio is gone)
        lr_scheduler_type="linear",
        num_train_epochs=EPOCHS,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=seed,
        use_cpu=True,
        bf16=bf16,
        disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(splits.train),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    logits = trainer.predict(encode(splits.test)).predictions
    gold = np.array([index[e.label] for e in splits.test])
    return float((logits.argmax(-1) == gold).mean()), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mr")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--strategies", default="lora")
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "no", "bf16"])
    parser.add_argument("--reference-bf16", action="store_true", help="also run Trainer with bf16=True")
    parser.add_argument(
        "--freeze-embeddings",
        action="store_true",
        help="head-finetune: also run taskfit with the word embeddings frozen (accuracy and speed over seeds)",
    )
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    data = DataConfig(dataset=args.dataset, shots=args.shots, test_limit=args.test_limit)
    pools = load_pools(data)
    for strategy in args.strategies.split(","):
        seeds = [int(s) for s in args.seeds.split(",")]
        frozen = args.freeze_embeddings and strategy == "head-finetune"
        compare(pools, data, strategy, seeds, args.precision, args.reference_bf16, frozen)


def compare(
    pools, data, strategy: str, seeds: list[int], precision="auto", reference_bf16=False, frozen=False
) -> None:
    reference = "Trainer + peft LoRA" if strategy == "lora" else "Trainer (full fine-tuning)"
    ours, theirs, theirs16, ours_frozen = [], [], [], []
    resolved = resolve_precision(precision, torch.device("cpu"))
    for seed in seeds:
        splits = sample_splits(pools, data, seed)
        ours.append(run_taskfit(splits, seed, strategy, precision))
        theirs.append(run_reference(splits, seed, strategy))
        if reference_bf16:
            theirs16.append(run_reference(splits, seed, strategy, bf16=True))
        if frozen:
            ours_frozen.append(run_taskfit(splits, seed, strategy, precision, freeze_embeddings=True))
        print(
            f"seed {seed}: taskfit {strategy} ({resolved}) {ours[-1][0]:.3f} ({ours[-1][1]:.1f} s), "
            f"{reference} {theirs[-1][0]:.3f} ({theirs[-1][1]:.1f} s)"
            + (f", bf16=True {theirs16[-1][0]:.3f} ({theirs16[-1][1]:.1f} s)" if theirs16 else "")
            + (
                f", taskfit embeddings frozen {ours_frozen[-1][0]:.3f} ({ours_frozen[-1][1]:.1f} s)"
                if frozen
                else ""
            ),
            flush=True,
        )
    n_train = len(splits.train) * EPOCHS

    def line(name, rows):
        accs, secs = [r[0] for r in rows], [r[1] for r in rows]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        return f"{name}: accuracy {statistics.mean(accs):.3f} ± {std:.3f}, {n_train / statistics.mean(secs):.1f} train examples/s"

    print(line(f"taskfit {strategy} (precision {resolved})", ours))
    print(line(reference, theirs))
    ratio = statistics.mean(r[1] for r in theirs) / statistics.mean(r[1] for r in ours)
    print(
        f"throughput taskfit / reference: {ratio:.2f}x (test {len(splits.test)} examples, {torch.get_num_threads()} threads)"
    )
    if theirs16:
        print(line(f"{reference}, bf16=True", theirs16))
        ratio = statistics.mean(r[1] for r in theirs16) / statistics.mean(r[1] for r in ours)
        print(f"throughput taskfit / reference with bf16=True: {ratio:.2f}x")
    if ours_frozen:
        print(line(f"taskfit {strategy}, word embeddings frozen", ours_frozen))
        ratio = statistics.mean(r[1] for r in ours) / statistics.mean(r[1] for r in ours_frozen)
        print(f"throughput frozen / not frozen: {ratio:.2f}x")


if __name__ == "__main__":
    main()
