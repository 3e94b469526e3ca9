"""``taskfit continual``: for each (method, seed), train one model stage by stage over the task sequence and
evaluate every task after every stage; then the report.

Each run's folder (``<output>/<method>/seed-<s>/``: ``result.json`` with R, the metrics and per-stage logs,
``model/``) is written as ``seed-<s>.partial`` and renamed when complete, so a folder that exists is
finished; a rerun skips it when its key (config of that run) matches. A failed run leaves ``error.txt`` in its
``.partial`` folder and the others go on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from taskfit.config import ContinualConfig
from taskfit.continual.methods import METHODS, Tools, make_optimizer
from taskfit.continual.metrics import continual_metrics
from taskfit.continual.model import build_model, predict_task, save_model, tokenize
from taskfit.data.prepare import Splits, sample_splits
from taskfit.io import write_json_atomic, write_jsonl_atomic, write_text_atomic
from taskfit.models.backbones import load_backbone, resolve_device
from taskfit.tasks import load_pools
from taskfit.training.loop import LoopSettings, accuracy, fit_epochs

RESULT_FILE = "result.json"


def run_key(config: ContinualConfig, method, seed: int) -> str:
    """What one run's result depends on; a finished folder with another key is run again."""
    payload = {
        "backbone": config.backbone,
        "tasks": [t.model_dump(mode="json") for t in config.tasks],
        "method": method.model_dump(mode="json"),
        "training": config.training.model_dump(mode="json"),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def run_continual(config: ContinualConfig, output: str | Path | None = None, log=print) -> dict:
    """Every (method, seed) run, then ``report.md``/``report.html``; returns the summary (rows per method)."""
    from taskfit.continual.report import summarise, write_continual_report

    out = Path(output or config.output_dir or Path("runs") / config.name)
    pools = {t.name: load_pools(t.data) for t in config.tasks}
    results = []
    for method in config.methods:
        for seed in config.seeds:
            folder = out / method.run_id / f"seed-{seed}"
            key = run_key(config, method, seed)
            done = _finished(folder, key)
            if done is not None:
                log(f"{method.run_id} seed {seed}: finished before, skipped")
                results.append(done)
                continue
            log(f"{method.run_id} seed {seed}: training over {' -> '.join(t.name for t in config.tasks)}")
            try:
                result = run_one(config, method, seed, pools, folder, key)
            except Exception as exc:  # keep the other runs; the report lists this one as failed
                partial = folder.with_name(folder.name + ".partial")
                write_text_atomic(partial / "error.txt", traceback.format_exc())
                log(f"{method.run_id} seed {seed}: FAILED: {exc} (see {partial / 'error.txt'})")
                results.append(
                    {"method": method.run_id, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}
                )
                continue
            results.append(result)
    summary = summarise(config, results)
    write_continual_report(out, config, summary, results)
    return summary


def _finished(folder: Path, key: str) -> dict | None:
    path = folder / RESULT_FILE
    if not path.exists():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    return result if result.get("key") == key else None


def run_one(config: ContinualConfig, method, seed: int, pools: dict, folder: Path, key: str) -> dict:
    tasks = [t.name for t in config.tasks]
    splits: dict[str, Splits] = {t.name: sample_splits(pools[t.name], t.data, seed) for t in config.tasks}
    train_cfg = config.training
    backbone = load_backbone(config.backbone, "encoder", config.trust_remote_code, "cpu")
    device = resolve_device(config.device)
    task_labels = {t: splits[t].labels for t in tasks}
    model = build_model(backbone.model, task_labels, method, train_cfg.dropout, train_cfg.pooling, seed).to(
        device
    )
    tools = Tools(backbone.tokenizer, train_cfg.max_length, device, seed)
    hooks = METHODS[method.name](method, tools)

    def row() -> list[float]:
        return [
            accuracy(
                predict_task(model, tools.tokenizer, splits[t].test, t, tools.max_length)[0], splits[t].test
            )
            for t in tasks
        ]

    baseline, R, stages, log = row(), [], [], []
    for i, task in enumerate(tasks):
        started = time.perf_counter()
        trainable = train_stage(model, hooks, tools, task, splits[task], method, train_cfg, seed + i, log)
        if i < len(tasks) - 1:  # what a method keeps (Fisher, buffer, copy) only serves later stages
            hooks.after_stage(model, task, splits[task].train)
        seconds = time.perf_counter() - started
        R.append(row())
        stages.append(
            {"task": task, "train_seconds": seconds, "trainable_params": trainable, "accuracy": R[-1]}
        )
        print(f"  after {task}: " + ", ".join(f"{t} {a:.3f}" for t, a in zip(tasks, R[-1])), file=sys.stderr)
    result = {
        "method": method.run_id,
        "seed": seed,
        "key": key,
        "tasks": tasks,
        "R": R,
        "baseline": baseline,
        **continual_metrics(R, baseline),
        "train_seconds": sum(s["train_seconds"] for s in stages),
        "trainable_params": max(s["trainable_params"] for s in stages),
        "stages": stages,
        "test_sizes": {t: len(splits[t].test) for t in tasks},
        "train_sizes": {t: len(splits[t].train) for t in tasks},
    }
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    info = {
        "backbone": config.backbone,
        "method": method.model_dump(mode="json"),
        "dropout": train_cfg.dropout,
        "pooling": train_cfg.pooling,
        "max_length": train_cfg.max_length,
    }
    save_model(partial / "model", model, tools.tokenizer, info)
    write_jsonl_atomic(partial / "train_log.jsonl", log)
    write_json_atomic(partial / RESULT_FILE, result)
    shutil.rmtree(folder, ignore_errors=True)  # an older run with another key
    partial.rename(folder)
    return result


def train_stage(
    model, hooks, tools: Tools, task: str, split: Splits, method, cfg, seed: int, log: list
) -> int:
    """One stage with the shared loop (early stopping on this task's dev set); returns the trained parameters."""
    model.use_task(task)
    hooks.prepare_stage(model, task)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = make_optimizer(model, method.lr or cfg.lr, method.head_lr or cfg.head_lr, cfg.weight_decay)
    labels = model.task_labels[task]

    def batch_loss(batch):
        encoded = tokenize(tools.tokenizer, batch, tools.max_length, tools.device)
        pooled = model.dropout(model.features(**encoded))  # (B, H)
        targets = torch.tensor([labels.index(e.label) for e in batch], device=tools.device)
        loss = F.cross_entropy(model.heads[task](pooled), targets)
        extra = hooks.extra_loss(model, encoded, pooled)
        return loss if extra is None else loss + extra

    stage_log: list[dict] = []
    fit_epochs(
        optimizer,
        model,
        batch_loss,
        split.train,
        split.dev,
        dev_accuracy=lambda ex: accuracy(
            predict_task(model, tools.tokenizer, ex, task, tools.max_length)[0], ex
        ),
        snapshot=lambda: {k: v.detach().clone() for k, v in model.state_dict().items()},
        restore=model.load_state_dict,
        set_train_mode=model.train,
        settings=LoopSettings(
            cfg.epochs, cfg.batch_size, cfg.warmup_ratio, cfg.max_grad_norm, cfg.patience, seed
        ),
        log=stage_log,
    )
    log.extend({"task": task, **r} for r in stage_log)
    return trainable
