"""How close a training step and a scoring pass come to this machine's matmul peak (issues 19 and 22).

Measures, at each thread count asked for, side by side in one process (variants interleaved A, B, A, B, ...
per repetition, medians reported, so that load from other processes hits every variant alike):

- the matmul peak: ``torch.mm`` on the shapes of a minilm layer at batch 16 x mr lengths, and 1024^3;
- a head-finetune training step on minilm (batch 16 of mr texts, forward, backward, clipping, AdamW), with
  taskfit's optimiser (fused AdamW), torch's default AdamW, the word embeddings frozen, and eager attention
  instead of SDPA. Useful FLOPs: 6 x non-embedding weights x real (unpadded) tokens;
- smollm2 zero-shot scoring (forward of the decoder stack only, batch 16 prompts), SDPA vs eager and
  ``no_grad`` vs ``inference_mode``. FLOPs: 2 x non-embedding weights x real tokens;
- every path also in bf16 autocast (``training.mixed_precision: auto`` on a CPU with AMX), against the bf16
  matmul peak as well as the fp32 one.

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


def matmul_peak(tokens: int, hidden: int, reps: int, dtype=torch.float32) -> dict[str, float]:
    """GFLOP/s of torch.mm on a layer's shapes (tokens x hidden @ hidden x 4 hidden, and back) and 1024^3."""
    shapes = {
        f"{tokens}x{hidden}@{hidden}x{4 * hidden}": (tokens, hidden, 4 * hidden),
        f"{tokens}x{4 * hidden}@{4 * hidden}x{hidden}": (tokens, 4 * hidden, hidden),
        f"{tokens}x{hidden}@{hidden}x{hidden}": (tokens, hidden, hidden),
        "1024^3": (1024, 1024, 1024),
    }
    calls, flops = {}, {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        calls[name] = lambda a=a, b=b: [torch.mm(a, b) for _ in range(5)]
        flops[name] = 2 * m * k * n * 5
    seconds = interleaved(calls, reps)
    return {name: flops[name] / seconds[name] / 1e9 for name in shapes}


def mr_batches(tokenizer, n: int, seed: int = 0, grouped: bool = False) -> list[dict[str, torch.Tensor]]:
    """n batches of 16 mr training texts (their real lengths), tokenised and padded. ``grouped``: the texts of
    every 4 batches are drawn together and sorted by length before they are split (length-grouped batching
    with a window of 4 batches), so a batch holds texts of similar length."""
    from taskfit.tasks import load_pools

    texts = [e.text for e in load_pools(DataConfig(dataset="mr", shots=16)).train]
    rng = random.Random(seed)
    if grouped:
        drawn = []
        for _ in range(-(-n // 4)):
            window = sorted(rng.sample(texts, 4 * BATCH), key=lambda t: len(tokenizer.tokenize(t)))
            drawn += [window[i : i + BATCH] for i in range(0, 4 * BATCH, BATCH)]
        chosen = drawn[:n]
    else:
        chosen = [rng.sample(texts, BATCH) for _ in range(n)]
    return [
        dict(tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt"))
        for batch in chosen
    ]


def non_embedding(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "wte" not in n)


def head_finetune_step(reps: int, compile_step: bool = False) -> tuple[dict[str, float], dict]:
    from taskfit.training.optim import adamw
    from taskfit.training.precision import autocast

    strategy = build_strategy(
        HeadFinetuneConfig(name="head-finetune", backbone="minilm"), Context(["negative", "positive"])
    )
    batches = mr_batches(strategy.tokenizer, 8)
    grouped = mr_batches(strategy.tokenizer, 8, grouped=True)
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches)
    padded = statistics.mean(b["input_ids"].numel() for b in batches)
    grouped_padded = statistics.mean(b["input_ids"].numel() for b in grouped)
    grouped_tokens = statistics.mean(int(b["attention_mask"].sum()) for b in grouped)
    targets = torch.tensor([i % 2 for i in range(BATCH)])

    def variant(
        fused: str,
        freeze_words: bool = False,
        attention: str = "sdpa",
        data=batches,
        compiled=False,
        precision: str = "no",
    ):
        model = copy.deepcopy(strategy.model)
        model.encoder.set_attn_implementation(attention)
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(not freeze_words)
        strategy.model = model  # _optimizer reads the strategy's model: taskfit's own parameter groups
        strategy.ctx.run.fused_optimizer = fused
        optimizer = strategy._optimizer()
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        state = {"i": 0}

        forward = torch.compile(model, dynamic=True) if compiled else model

        def step():
            batch = data[state["i"] % len(data)]
            state["i"] += 1
            with autocast(precision, "cpu"):  # as a cell runs: the whole step inside the cell's autocast
                loss = torch.nn.functional.cross_entropy(forward(**batch).float(), targets)
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
        "fused, length-grouped batches": variant("auto", data=grouped),
        "fused, bf16 autocast": variant("auto", precision="bf16"),
        "fused, bf16 autocast, length-grouped": variant("auto", data=grouped, precision="bf16"),
    }
    if compile_step:
        compiled = variant("auto", compiled=True)
        compile_seconds = timed(lambda: [compiled() for _ in range(len(batches))])  # one pass over the shapes
        variants["fused, torch.compile(dynamic=True)"] = compiled
    seconds = interleaved(variants, reps)
    weights = non_embedding(strategy.model)
    flops = {k: 6 * weights * (grouped_tokens if "grouped" in k else tokens) for k in variants}
    info = {
        "tokens": tokens,
        "padded": padded,
        "grouped_tokens": grouped_tokens,
        "grouped_padded": grouped_padded,
        "flops": 6 * weights * tokens,
        "compile_seconds": compile_seconds if compile_step else None,
    }
    return {k: (v, flops[k] / v / 1e9) for k, v in seconds.items()}, info


def lora_and_contrastive_steps(reps: int) -> tuple[dict[str, float], dict]:
    """A lora step (batch 16, taskfit's lora defaults) and a contrastive pair step (16 pairs: both sides
    through the encoder), with taskfit's optimiser. Useful FLOPs: lora 4 x non-embedding weights x tokens
    (forward, and the backward's input gradients; the frozen weights get none); contrastive 6 x weights x
    the tokens of both sides."""
    from taskfit.config import LoraStrategyConfig
    from taskfit.training.precision import autocast

    lora = build_strategy(
        LoraStrategyConfig(name="lora", backbone="minilm"), Context(["negative", "positive"])
    )
    batches = mr_batches(lora.tokenizer, 8)
    rights = mr_batches(lora.tokenizer, 8, seed=1)
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches)
    right_tokens = statistics.mean(int(b["attention_mask"].sum()) for b in rights)
    targets = torch.tensor([i % 2 for i in range(BATCH)])
    optimizer = lora._optimizer()
    lora.model.train()
    state = {"i": 0}

    def lora_step(precision="no"):
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        with autocast(precision, "cpu"):
            torch.nn.functional.cross_entropy(lora.model(**batch).float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    from taskfit.config import ContrastiveConfig
    from taskfit.models.embeddings import mean_pool
    from taskfit.training.optim import adamw

    contrastive = build_strategy(
        ContrastiveConfig(name="contrastive", backbone="minilm"), Context(["negative", "positive"])
    )
    encoder = contrastive.encoder.train()
    params = [p for p in encoder.parameters() if p.requires_grad]
    pair_optimizer = adamw(params, fused="auto", lr=2e-5)
    target = torch.tensor([float(i % 2) for i in range(BATCH)])

    def embed(batch):
        hidden = encoder(**batch).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden.float(), batch["attention_mask"]), dim=-1)

    def pair_step(precision="no"):  # as ContrastiveStrategy.fit: the two sides one after the other
        i = state["i"] % len(batches)
        state["i"] += 1
        with autocast(precision, "cpu"):
            loss = torch.nn.functional.mse_loss((embed(batches[i]) * embed(rights[i])).sum(-1), target)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        pair_optimizer.step()
        pair_optimizer.zero_grad(set_to_none=True)

    bf16 = "bf16"
    variants = {
        "lora step": lora_step,
        "lora step, bf16 autocast": lambda: lora_step(bf16),
        "contrastive pair step": pair_step,
        "contrastive pair step, bf16 autocast": lambda: pair_step(bf16),
    }
    seconds = interleaved(variants, reps)
    weights = non_embedding(contrastive.encoder)
    flops = {
        k: 4 * weights * tokens if k.startswith("lora") else 6 * weights * (tokens + right_tokens)
        for k in variants
    }
    return {k: (v, flops[k] / v / 1e9) for k, v in seconds.items()}, {"tokens": tokens}


def smollm2_scoring(reps: int) -> tuple[dict[str, float], dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from taskfit.models.backbones import resolve

    folder = resolve("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    batches = mr_batches(tokenizer, 4)
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches)

    from taskfit.training.precision import autocast

    def variant(attention: str, mode, precision="no"):
        model = copy.deepcopy(base)
        model.set_attn_implementation(attention)
        state = {"i": 0}

        def forward():
            batch = batches[state["i"] % len(batches)]
            state["i"] += 1
            with mode(), autocast(precision, "cpu"):
                model.model(**batch)

        return forward

    variants = {
        "sdpa, inference_mode": variant("sdpa", torch.inference_mode),
        "sdpa, no_grad": variant("sdpa", torch.no_grad),
        "eager, inference_mode": variant("eager", torch.inference_mode),
        "sdpa, inference_mode, bf16 autocast": variant("sdpa", torch.inference_mode, "bf16"),
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
    parser.add_argument("--compile", action="store_true", help="add a torch.compile variant of the step")
    args = parser.parse_args()
    print(f"torch {torch.__version__}; load average {os.getloadavg()}", flush=True)
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        print(f"\n## {threads} thread(s)")
        peak = matmul_peak(BATCH * 26, 384, args.reps)
        for name, gflops in peak.items():
            print(f"matmul {name}: {gflops:.1f} GFLOP/s")
        best = max(peak.values())
        peak16 = matmul_peak(BATCH * 26, 384, args.reps, torch.bfloat16)
        for name, gflops in peak16.items():
            print(f"matmul bf16 {name}: {gflops:.1f} GFLOP/s")
        best16 = max(peak16.values())

        def of_peak(name: str, gflops: float, best=best, best16=best16) -> str:
            """The share of the fp32 peak, and for a bf16 variant of the bf16 peak too."""
            share = f"{gflops / best:.0%} of the fp32 peak"
            return share + (f", {gflops / best16:.0%} of the bf16 peak" if "bf16" in name else "")

        for name, ms in tokenize_vs_pad(args.reps).items():
            print(f"{name}: {ms:.2f} ms per batch of {BATCH}")
        rows, info = head_finetune_step(args.reps, args.compile)
        print(
            f"\nminilm head-finetune step, batch {BATCH}, {info['tokens']:.0f} real / {info['padded']:.0f} padded "
            f"tokens ({info['grouped_tokens']:.0f} / {info['grouped_padded']:.0f} length-grouped), "
            f"{info['flops'] / 1e9:.2f} GFLOP useful"
        )
        if info["compile_seconds"] is not None:
            print(f"  torch.compile: first pass over the 8 batches took {info['compile_seconds']:.1f} s")
        for name, (seconds, gflops) in rows.items():
            print(f"  {name}: {seconds * 1e3:.0f} ms, {gflops:.1f} GFLOP/s = {of_peak(name, gflops)}")
        rows, info = lora_and_contrastive_steps(args.reps)
        print(
            f"\nminilm lora and contrastive steps, batch {BATCH} ({info['tokens']:.0f} real tokens per side)"
        )
        for name, (seconds, gflops) in rows.items():
            print(f"  {name}: {seconds * 1e3:.0f} ms, {gflops:.1f} GFLOP/s = {of_peak(name, gflops)}")
        if not args.skip_smollm2:
            rows, info = smollm2_scoring(args.reps)
            print(f"\nsmollm2 scoring forward, batch {BATCH}, {info['tokens']:.0f} real tokens")
            for name, (seconds, gflops) in rows.items():
                print(f"  {name}: {seconds * 1e3:.0f} ms, {gflops:.1f} GFLOP/s = {of_peak(name, gflops)}")
    print(f"\nload average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
