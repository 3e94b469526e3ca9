"""How close a training step and a scoring pass come to this machine's matmul peak (issues 19 and 22).

Measures, at each thread count asked for, side by side in one process (variants interleaved A, B, A, B, ...
per repetition, medians reported, so that load from other processes hits every variant alike):

- the matmul peak: ``torch.mm`` on the shapes of a minilm layer at batch 16 x mr lengths, and 1024^3;
- a head-finetune training step on minilm (batch 16 of mr texts, forward, backward, clipping, AdamW), with
  taskfit's optimiser (fused AdamW), torch's default AdamW, the word embeddings frozen, and eager attention
  instead of SDPA. Useful FLOPs: 6 x non-embedding weights x real (unpadded) tokens;
- smollm2 zero-shot scoring (forward of the decoder stack only, batch 16 prompts), SDPA vs eager and
  ``no_grad`` vs ``inference_mode``. FLOPs: 2 x non-embedding weights x real tokens.

Usage:  .venv/bin/python bench/flops.py [--threads 1,2] [--reps 15] [--skip-smollm2]
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import time

import torch

from taskfit.config import DataConfig, HeadFinetuneConfig
from taskfit.strategies import Context, build_strategy

BATCH = 16


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(variants: dict, reps: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each variant, calls interleaved per repetition."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_peak(tokens: int, hidden: int, reps: int) -> dict[str, float]:
    """GFLOP/s of torch.mm on a layer's shapes (tokens x hidden @ hidden x 4 hidden, and back) and 1024^3."""
    shapes = {
        f"{tokens}x{hidden}@{hidden}x{4 * hidden}": (tokens, hidden, 4 * hidden),
        f"{tokens}x{4 * hidden}@{4 * hidden}x{hidden}": (tokens, 4 * hidden, hidden),
        f"{tokens}x{hidden}@{hidden}x{hidden}": (tokens, hidden, hidden),
        "1024^3": (1024, 1024, 1024),
    }
    calls, flops = {}, {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        calls[name] = lambda a=a, b=b: [torch.mm(a, b) for _ in range(5)]
        flops[name] = 2 * m * k * n * 5
    seconds = interleaved(calls, reps)
    return {name: flops[name] / seconds[name] / 1e9 for name in shapes}


def mr_batches(tokenizer, n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """n batches of 16 mr training texts (their real lengths), tokenised and padded."""
    from taskfit.tasks import load_pools

    texts = [e.text for e in load_pools(DataConfig(dataset="mr", shots=16)).train]
    rng = random.Random(seed)
    return [
        dict(
            tokenizer(
                rng.sample(texts, BATCH), padding=True, truncation=True, max_length=256, return_tensors="pt"
            )
        )
        for _ in range(n)
    ]


def non_embedding(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "wte" not in n)


def head_finetune_step(reps: int) -> tuple[dict[str, float], dict]:
    from taskfit.training.optim import adamw

    strategy = build_strategy(
        HeadFinetuneConfig(name="head-finetune", backbone="minilm"), Context(["negative", "positive"])
    )
    batches = mr_batches(strategy.tokenizer, 8)
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches)
    padded = statistics.mean(b["input_ids"].numel() for b in batches)
    targets = torch.tensor([i % 2 for i in range(BATCH)])

    def variant(fused: str, freeze_words: bool = False, attention: str = "sdpa"):
        model = copy.deepcopy(strategy.model)
        model.encoder.set_attn_implementation(attention)
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(not freeze_words)
        strategy.model = model  # _optimizer reads the strategy's model: taskfit's own parameter groups
        strategy.ctx.run.fused_optimizer = fused
        optimizer = strategy._optimizer()
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        state = {"i": 0}

        def step():
            batch = batches[state["i"] % len(batches)]
            state["i"] += 1
            loss = torch.nn.functional.cross_entropy(model(**batch), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    assert adamw  # the optimiser every strategy uses (via strategy._optimizer)
    variants = {
        "taskfit (fused AdamW, sdpa)": variant("auto"),
        "torch default AdamW": variant("off"),
        "fused, word embeddings frozen": variant("auto", freeze_words=True),
        "fused, eager attention": variant("auto", attention="eager"),
    }
    seconds = interleaved(variants, reps)
    flops = 6 * non_embedding(strategy.model) * tokens
    info = {"tokens": tokens, "padded": padded, "flops": flops}
    return {k: (v, flops / v / 1e9) for k, v in seconds.items()}, info


def smollm2_scoring(reps: int) -> tuple[dict[str, float], dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from taskfit.models.backbones import resolve

    folder = resolve("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    batches = mr_batches(tokenizer, 4)
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches)

    def variant(attention: str, mode):
        model = copy.deepcopy(base)
        model.set_attn_implementation(attention)
        state = {"i": 0}

        def forward():
            batch = batches[state["i"] % len(batches)]
            state["i"] += 1
            with mode():
                model.model(**batch)

        return forward

    variants = {
        "sdpa, inference_mode": variant("sdpa", torch.inference_mode),
        "sdpa, no_grad": variant("sdpa", torch.no_grad),
        "eager, inference_mode": variant("eager", torch.inference_mode),
    }
    seconds = interleaved(variants, reps)
    flops = 2 * non_embedding(base.model) * tokens
    return {k: (v, flops / v / 1e9) for k, v in seconds.items()}, {"tokens": tokens, "flops": flops}


def tokenize_vs_pad(reps: int) -> dict[str, float]:
    """ms per batch of 16 mr texts: tokenising them (what head-finetune did every batch of every epoch) vs
    padding token ids kept from one tokenisation (what it does now)."""
    from transformers import AutoTokenizer

    from taskfit.models.backbones import resolve
    from taskfit.strategies.head_finetune import pad_rows
    from taskfit.tasks import load_pools

    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm"))
    texts = [e.text for e in load_pools(DataConfig(dataset="mr", shots=16)).train][: 16 * 20]
    enc = tokenizer(texts, truncation=True, max_length=256)
    rows = [{k: v[i] for k, v in enc.items()} for i in range(len(texts))]
    batches = range(0, len(texts), BATCH)
    calls = {
        "tokenise per batch": lambda: [
            tokenizer(
                texts[i : i + BATCH], padding=True, truncation=True, max_length=256, return_tensors="pt"
            )
            for i in batches
        ],
        "pad kept token ids": lambda: [pad_rows(tokenizer, rows[i : i + BATCH], "cpu") for i in batches],
    }
    return {k: v * 1e3 / len(batches) for k, v in interleaved(calls, reps).items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", default="1")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}; load average {os.getloadavg()}", flush=True)
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        print(f"\n## {threads} thread(s)")
        peak = matmul_peak(BATCH * 26, 384, args.reps)
        for name, gflops in peak.items():
            print(f"matmul {name}: {gflops:.1f} GFLOP/s")
        best = max(peak.values())
        for name, ms in tokenize_vs_pad(args.reps).items():
            print(f"{name}: {ms:.2f} ms per batch of {BATCH}")
        rows, info = head_finetune_step(args.reps)
        print(
            f"\nminilm head-finetune step, batch {BATCH}, {info['tokens']:.0f} real / {info['padded']:.0f} padded "
            f"tokens, {info['flops'] / 1e9:.2f} GFLOP useful"
        )
        for name, (seconds, gflops) in rows.items():
            print(f"  {name}: {seconds * 1e3:.0f} ms, {gflops:.1f} GFLOP/s = {gflops / best:.0%} of peak")
        if not args.skip_smollm2:
            rows, info = smollm2_scoring(args.reps)
            print(f"\nsmollm2 scoring forward, batch {BATCH}, {info['tokens']:.0f} real tokens")
            for name, (seconds, gflops) in rows.items():
                print(f"  {name}: {seconds * 1e3:.0f} ms, {gflops:.1f} GFLOP/s = {gflops / best:.0%} of peak")
    print(f"\nload average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
