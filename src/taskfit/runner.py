"""One experiment: every strategy x seed on the same k-shot splits; one folder per cell, a results table.

Layout of ``output_dir``::

    config.yaml                 resolved config (defaults filled in)
    results.json, results.md    per-strategy mean ± std, per-cell figures, data notes
    <strategy id>/seed-<s>/     metrics.json, predictions.jsonl, train_log.jsonl, model/ (reloadable)
                                or error.txt when that cell failed (the other cells still run)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from taskfit.config import ExperimentConfig, PromptConfig
from taskfit.data.prepare import default_prompt_fields, load_pools, sample_splits
from taskfit.errors import TaskfitError
from taskfit.evaluation.metrics import classification_metrics
from taskfit.io import write_json_atomic, write_jsonl_atomic, write_text_atomic
from taskfit.models.backbones import detect_kind, resolve_device
from taskfit.progress import make_progress
from taskfit.prompts import Template, Verbalizer
from taskfit.strategies import NEEDS_KIND, STRATEGIES, BackboneCache, Context, build_strategy


@dataclass
class CellResult:
    strategy: str
    backbone: str
    seed: int
    status: str  # "ok" | "failed"
    metrics: dict = field(default_factory=dict)
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    trainable: int = 0
    total_params: int = 0
    error: str = ""


def resolve_prompt(config: ExperimentConfig) -> ExperimentConfig:
    """Fill in the built-in dataset's prompt when the config has none."""
    if config.prompt is None:
        fields = default_prompt_fields(config.data)
        if fields:
            return config.model_copy(update={"prompt": PromptConfig(**fields)})
    return config


def validate_plan(config: ExperimentConfig, labels: list[str]) -> None:
    """Reject what cannot work before anything trains: wrong backbone kind, bad template or verbalizer."""
    resolve_device(config.device)
    kinds: dict[str, str] = {}
    needs_prompt = False
    for s in config.strategies:
        if s.backbone not in kinds:
            kinds[s.backbone] = detect_kind(s.backbone, config.trust_remote_code)
        kind = kinds[s.backbone]
        wanted = NEEDS_KIND.get(s.name)
        if wanted and wanted != kind:
            raise TaskfitError(
                f"strategy '{s.run_id}' needs a {wanted} backbone, but '{s.backbone}' is a {kind}"
                + (" (try backbone: smollm2)" if wanted == "causal-lm" else " (try backbone: minilm)")
            )
        needs_prompt |= kind == "causal-lm"
    if needs_prompt:
        if config.prompt is None:
            raise TaskfitError("causal-LM strategies need a 'prompt:' block with a template and a verbalizer")
        Template.parse(config.prompt.template)
        Verbalizer.build(config.prompt.verbalizer, labels)


def _fmt_mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarise(cells: list[CellResult]) -> list[dict]:
    rows = []
    for sid in dict.fromkeys(c.strategy for c in cells):
        group = [c for c in cells if c.strategy == sid]
        ok = [c for c in group if c.status == "ok"]
        acc = [c.metrics["accuracy"] for c in ok]
        f1 = [c.metrics["macro_f1"] for c in ok]
        n_pred = sum(c.metrics.get("n", 0) for c in ok)
        rows.append(
            {
                "strategy": sid,
                "backbone": group[0].backbone,
                "runs": len(ok),
                "failed": len(group) - len(ok),
                "accuracy_mean": statistics.mean(acc) if acc else None,
                "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else None,
                "macro_f1_mean": statistics.mean(f1) if f1 else None,
                "macro_f1_std": statistics.stdev(f1) if len(f1) > 1 else None,
                "accuracy": _fmt_mean_std(acc),
                "macro_f1": _fmt_mean_std(f1),
                "trainable_params": ok[0].trainable if ok else None,
                "total_params": ok[0].total_params if ok else None,
                "fit_seconds_mean": statistics.mean(c.fit_seconds for c in ok) if ok else None,
                "predict_examples_per_s": n_pred / sum(c.predict_seconds for c in ok) if ok else None,
            }
        )
    return rows


def results_table(rows: list[dict]) -> str:
    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    lines = [
        "| strategy | backbone | accuracy | macro-F1 | runs | trainable params | fit s | predict ex/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = f"{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        lines.append(
            f"| {r['strategy']} | {r['backbone']} | {r['accuracy']} | {r['macro_f1']} | {runs} | "
            f"{num(r['trainable_params'], ',')} | {num(r['fit_seconds_mean'], '.1f')} | "
            f"{num(r['predict_examples_per_s'], '.1f')} |"
        )
    return "\n".join(lines)


def depends_on_seed(strategy_config) -> bool:
    """Whether a strategy's result can change with the seed's k-shot sample (zero-shot without search can't)."""
    return (
        STRATEGIES[strategy_config.name].uses_training_data
        or getattr(strategy_config, "prompt_search", None) is not None
    )


def run_cell(strategy_config, ctx: Context, splits, cell_dir: Path) -> CellResult:
    result = CellResult(strategy_config.run_id, strategy_config.backbone, ctx.seed, "ok")
    strategy = build_strategy(strategy_config, ctx)
    started = time.perf_counter()
    strategy.fit(splits.train, splits.dev)
    result.fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    preds = strategy.predict(splits.test)
    result.predict_seconds = time.perf_counter() - started
    gold = [e.label for e in splits.test]
    result.metrics = classification_metrics(gold, preds.labels, splits.labels)
    result.trainable, result.total_params = strategy.trainable_parameters()
    result.metrics.update(
        {
            "fit_seconds": result.fit_seconds,
            "predict_seconds": result.predict_seconds,
            "trainable_params": result.trainable,
            "total_params": result.total_params,
            "train_examples": len(splits.train),
            "dev_examples": len(splits.dev),
            "seed": ctx.seed,
        }
    )
    strategy.save(cell_dir / "model")
    write_jsonl_atomic(
        cell_dir / "predictions.jsonl",
        (
            {
                "text": e.text,
                "gold": e.label,
                "predicted": p,
                "probs": dict(zip(preds.label_names, map(float, pr))),
            }
            for e, p, pr in zip(splits.test, preds.labels, preds.probs.tolist())
        ),
    )
    write_jsonl_atomic(cell_dir / "train_log.jsonl", strategy.log)
    write_json_atomic(cell_dir / "metrics.json", result.metrics)  # last: its presence marks a finished cell
    return result


def run_experiment(config: ExperimentConfig, output_dir: str | Path | None = None, stream=None) -> dict:
    stream = stream or sys.stdout
    config = resolve_prompt(config)
    out = Path(output_dir or config.output_dir or f"runs/{config.name}")
    pools = load_pools(config.data)
    validate_plan(config, pools.labels)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out / "config.yaml",
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True),
    )
    data_notes: list[str] = []

    backbones = BackboneCache(config.trust_remote_code, config.device)
    progress = make_progress()
    cells: list[CellResult] = []
    for seed_index, seed in enumerate(config.seeds):
        splits = sample_splits(pools, config.data, seed)
        for note in splits.notes:
            if note not in data_notes:
                data_notes.append(note)
                print(f"data: {note}", file=stream)
        for s in config.strategies:
            if seed_index > 0 and not depends_on_seed(s):
                continue  # e.g. zero-shot: the same answer for every seed
            cell_dir = out / s.run_id / f"seed-{seed}"
            print(
                f"[{s.run_id} | {s.backbone} | seed {seed}] train {len(splits.train)}, dev {len(splits.dev)}, "
                f"test {len(splits.test)}",
                file=stream,
                flush=True,
            )
            ctx = Context(
                labels=splits.labels, prompt=config.prompt, seed=seed, backbones=backbones, progress=progress
            )
            try:
                cell = run_cell(s, ctx, splits, cell_dir)
                (cell_dir / "error.txt").unlink(missing_ok=True)
                print(
                    f"    accuracy {cell.metrics['accuracy']:.3f}  macro-F1 {cell.metrics['macro_f1']:.3f}  "
                    f"(fit {cell.fit_seconds:.1f} s, predict {cell.predict_seconds:.1f} s)",
                    file=stream,
                    flush=True,
                )
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one failing cell is reported; the others still run
                detail = str(exc) if isinstance(exc, TaskfitError) else traceback.format_exc()
                cell = CellResult(s.run_id, s.backbone, seed, "failed", error=f"{type(exc).__name__}: {exc}")
                write_text_atomic(cell_dir / "error.txt", detail)
                print(
                    f"    FAILED: {cell.error} (details in {cell_dir / 'error.txt'})", file=stream, flush=True
                )
            cells.append(cell)

    rows = summarise(cells)
    majority = next((c.metrics["majority_baseline"] for c in cells if c.status == "ok"), None)
    summary = {
        "name": config.name,
        "output_dir": str(out),
        "data_notes": data_notes,
        "majority_baseline": majority,
        "strategies": rows,
        "cells": [c.__dict__ for c in cells],
    }
    write_json_atomic(out / "results.json", summary)
    table = results_table(rows)
    notes = [f"- {n}" for n in data_notes]
    if majority:
        notes.append(
            f"- majority-class baseline (always '{majority['label']}'): accuracy {majority['accuracy']:.3f}"
        )
    notes.append("- accuracy: mean ± sample std over seeds; strategies that do not train run once")
    write_text_atomic(out / "results.md", f"# {config.name}\n\n{table}\n\n" + "\n".join(notes) + "\n")
    print("\n" + table + "\n" + "\n".join(notes), file=stream)
    print(f"\nresults: {out / 'results.md'}", file=stream, flush=True)
    return summary


def load_results(output_dir: str | Path) -> dict:
    path = Path(output_dir) / "results.json"
    if not path.exists():
        raise TaskfitError(f"{output_dir}: no results.json (not a finished experiment folder)")
    return json.loads(path.read_text(encoding="utf-8"))
