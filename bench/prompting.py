"""Prompting benchmarks on the packaged SmolLM2-135M (2 CPU cores in BENCHMARKS.md):

1. zero-shot accuracy on the whole `mr` test split (999 snippets);
2. in-context throughput with and without reuse of the shared demonstration prefix's KV cache
   (same demonstrations, same test examples; also checks that both give the same predictions).

Usage:  .venv/bin/python bench/prompting.py [--examples 200] [--demos-per-class 2 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from taskfit.config import DataConfig, InContextConfig, PromptConfig, ZeroShotConfig
from taskfit.data.catalog import load_builtin
from taskfit.data.prepare import default_prompt_fields, k_shot
from taskfit.strategies import BackboneCache, Context, build_strategy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--demos-per-class", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()

    ds = load_builtin("mr")
    labels = list(ds.card.labels)
    prompt = PromptConfig(**default_prompt_fields(DataConfig(dataset="mr")))
    backbones = BackboneCache()
    ctx = Context(labels, prompt, seed=0, backbones=backbones)
    out = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
    }

    zs = build_strategy(ZeroShotConfig(name="zero-shot", backbone="smollm2"), ctx)
    started = time.perf_counter()
    preds = zs.predict(ds.test)
    seconds = time.perf_counter() - started
    acc = sum(p == e.label for p, e in zip(preds.labels, ds.test)) / len(ds.test)
    out["zero_shot_full_test"] = {
        "n": len(ds.test),
        "accuracy": acc,
        "examples_per_s": len(ds.test) / seconds,
    }
    print(
        f"zero-shot smollm2 on mr test ({len(ds.test)}): accuracy {acc:.3f}, {len(ds.test) / seconds:.1f} ex/s"
    )

    test = ds.test[: args.examples]
    train = k_shot(ds.train, 16, labels, seed=0)
    for k in args.demos_per_class:
        rows = {}
        for reuse in (True, False):
            cfg = InContextConfig(
                name="in-context", backbone="smollm2", demos_per_class=k, reuse_prefix_cache=reuse
            )
            s = build_strategy(cfg, ctx)
            s.fit(train, [])
            started = time.perf_counter()
            p = s.predict(test)
            seconds = time.perf_counter() - started
            rows[reuse] = (p, len(test) / seconds)
        prefix_tokens = len(backbones.get("smollm2").tokenizer(s.shared_prefix())["input_ids"])
        same = rows[True][0].labels == rows[False][0].labels
        max_diff = (rows[True][0].probs - rows[False][0].probs).abs().max().item()
        speedup = rows[True][1] / rows[False][1]
        out[f"in_context_{k}_per_class"] = {
            "prefix_tokens": prefix_tokens,
            "examples_per_s_reuse": rows[True][1],
            "examples_per_s_no_reuse": rows[False][1],
            "speedup": speedup,
            "same_predictions": same,
            "max_prob_diff": max_diff,
        }
        print(
            f"in-context {k}/class (prefix {prefix_tokens} tokens): {rows[True][1]:.1f} ex/s with prefix reuse, "
            f"{rows[False][1]:.1f} without (x{speedup:.2f}); same predictions: {same} (max prob diff {max_diff:.1e})"
        )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
