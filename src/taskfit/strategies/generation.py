"""Generation by prompting alone (task: generation): zero-shot and few-shot (in-context) baselines.

The untouched model's scores are the "before" that every fine-tuned generation strategy is read against.
``Generations`` and ``GenerationModel`` are shared with ``supervised_finetune``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from taskfit.config import GenerationBase, GenerationInContextConfig, GenerationZeroShotConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.models.backbones import Backbone, detect_kind
from taskfit.models.generation import Encoded, Renderer, generate, perplexity
from taskfit.strategies.base import (
    Context,
    count_parameters,
    read_demonstrations,
    save_demonstrations,
    write_strategy_file,
)


@dataclass
class Generations:
    texts: list[str]
    new_tokens: int  # generated tokens in all (for tokens/s)
    seconds: float


def default_template(ctx: Context) -> str:
    return ctx.prompt.template if ctx.prompt else "{text}{answer}"


def require_causal_lm(config: GenerationBase, ctx: Context) -> None:
    if detect_kind(config.backbone, ctx.backbones.trust_remote_code) != "causal-lm":
        raise TaskfitError(
            f"{config.run_id}: generation needs a causal LM backbone (e.g. smollm2); '{config.backbone}' is an "
            "encoder"
        )


class GenerationModel:
    """A causal LM, its tokenizer and the renderer: generate text and measure target perplexity."""

    def __init__(self, backbone: Backbone, config: GenerationBase, ctx: Context) -> None:
        self.lm, self.tokenizer, self.config, self.ctx = backbone.model, backbone.tokenizer, config, ctx
        self.renderer = Renderer.build(self.tokenizer, default_template(ctx), config.chat_template)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def encode(self, examples: list[Example], demos_for) -> list[Encoded]:
        return [self.renderer.encode(e, demos_for(e), self.config.max_length) for e in examples]

    def generate(self, model, examples: list[Example], demos_for, desc: str) -> Generations:
        prompts = [self.renderer.prompt_ids(e, demos_for(e), self.config.max_length) for e in examples]
        started = time.perf_counter()
        texts, new_tokens = generate(
            model,
            self.tokenizer,
            prompts,
            self.config.decoding,
            self.renderer.stop_token_ids(),
            self.ctx.seed,
            self.ctx.advance(desc, len(examples)),
        )
        return Generations(texts, new_tokens, time.perf_counter() - started)

    def perplexity(self, model, examples: list[Example], demos_for, desc: str) -> dict[str, float]:
        encoded = self.encode(examples, demos_for)
        advance = self.ctx.advance(desc, len(examples))
        return perplexity(model, encoded, self.pad_id, self.config.eval_batch_size, advance)


class GenerationPrompting:
    """zero-shot (template only) and in-context (``demos`` training pairs before each input)."""

    def __init__(
        self, config: GenerationZeroShotConfig | GenerationInContextConfig, ctx: Context, demos=()
    ) -> None:
        require_causal_lm(config, ctx)
        self.config, self.ctx, self.log = config, ctx, []
        self.model = GenerationModel(ctx.backbones.get(config.backbone, "causal-lm"), config, ctx)
        self.pool: list[Example] = list(demos)
        if isinstance(config, GenerationInContextConfig):
            self.model.renderer.separator = config.separator

    @property
    def net(self):
        """The module generation runs through (the shared interface with supervised_finetune)."""
        return self.model.lm

    def demos_for(self, example: Example) -> list[Example]:
        return self._demos_for(example)

    def _demos_for(self, example: Example) -> list[Example]:
        c = self.config
        if not isinstance(c, GenerationInContextConfig) or not self.pool:
            return []
        candidates = [d for d in self.pool if d.text != example.text]  # never the input itself
        if c.selection == "first":
            return candidates[: c.demos]
        rng = random.Random(f"{self.ctx.seed}/{example.text}")
        return rng.sample(candidates, min(c.demos, len(candidates)))

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        if isinstance(self.config, GenerationInContextConfig):
            if not train:
                raise TaskfitError(f"{self.config.run_id}: in-context needs training pairs to show")
            self.pool = list(train)

    def predict(self, examples: list[Example]) -> Generations:
        return self.model.generate(self.model.lm, examples, self._demos_for, f"{self.config.run_id} generate")

    def perplexity(self, examples: list[Example]) -> dict[str, float]:
        return self.model.perplexity(
            self.model.lm, examples, self._demos_for, f"{self.config.run_id} perplexity"
        )

    def trainable_parameters(self) -> tuple[int, int]:
        return 0, count_parameters(self.model.lm)[1]

    def save(self, directory: Path) -> None:
        save_demonstrations(directory, self.pool)
        write_strategy_file(directory, self.config, self.ctx, {"task": "generation"})

    @classmethod
    def load(cls, directory: Path, config, ctx: Context, saved: dict) -> GenerationPrompting:
        return cls(config, ctx, read_demonstrations(directory))


class GenerationFewShot(GenerationPrompting):
    """in-context: the same as zero-shot plus demonstrations drawn from the training pairs."""
