"""Generation throughput on smollm2: taskfit's batched decoding vs one prompt at a time, and vs the
field's reference (transformers' text-generation pipeline, same batch size), in one run.

    python bench/generation_throughput.py [--prompts 48] [--batch-size 16] [--max-new-tokens 32] [--threads 2]

Greedy decoding, chat template, movie-dialog test inputs. Tokens/s counts generated tokens (up to and
including the end-of-turn token), never padding.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from taskfit.config import DecodingConfig
from taskfit.data.catalog import load_builtin
from taskfit.models.backbones import load_backbone
from taskfit.models.generation import Renderer, generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backbone = load_backbone("smollm2", "causal-lm", device="cpu")
    model, tokenizer = backbone.model, backbone.tokenizer
    renderer = Renderer.build(tokenizer, "{text}{answer}")
    examples = load_builtin("movie-dialog").test[: args.prompts]
    prompts = [renderer.prompt_ids(e) for e in examples]
    stop = renderer.stop_token_ids()

    def ours(batch_size: int) -> tuple[list[str], int, float]:
        decoding = DecodingConfig(max_new_tokens=args.max_new_tokens, batch_size=batch_size)
        generate(model, tokenizer, prompts[:2], decoding, stop)  # warm-up
        started = time.perf_counter()
        texts, tokens = generate(model, tokenizer, prompts, decoding, stop)
        return texts, tokens, time.perf_counter() - started

    batched, batched_tokens, batched_s = ours(args.batch_size)
    single, single_tokens, single_s = ours(1)

    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
    pipe.tokenizer.padding_side = "left"
    texts = [renderer.prompt_text(e) for e in examples]
    kwargs = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=False,
        return_full_text=False,
        eos_token_id=stop,
        pad_token_id=tokenizer.pad_token_id,
    )
    pipe(texts[:2], batch_size=2, **kwargs)  # warm-up
    started = time.perf_counter()
    out = pipe(texts, batch_size=args.batch_size, **kwargs)
    pipe_s = time.perf_counter() - started
    pipe_tokens = sum(
        min(
            len(tokenizer(o[0]["generated_text"], add_special_tokens=False)["input_ids"]) + 1,
            args.max_new_tokens,
        )
        for o in out
    )  # the pipeline returns text: re-tokenise (+1 for the end-of-turn it stripped, capped)

    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "prompts": args.prompts,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "taskfit_batched_tokens_per_s": batched_tokens / batched_s,
        "taskfit_one_at_a_time_tokens_per_s": single_tokens / single_s,
        "pipeline_batched_tokens_per_s": pipe_tokens / pipe_s,
        "batched_over_one_at_a_time": (batched_tokens / batched_s) / (single_tokens / single_s),
        "taskfit_over_pipeline": (batched_tokens / batched_s) / (pipe_tokens / pipe_s),
        "same_text_batched_vs_single": sum(a == b for a, b in zip(batched, single)) / len(single),
        "samples": [{"input": e.text, "output": t} for e, t in zip(examples[:3], batched[:3])],
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
