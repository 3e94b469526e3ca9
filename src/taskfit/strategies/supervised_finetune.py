"""Supervised fine-tuning of a causal LM for generation (task: generation): full-finetune, lora, prompt-tuning.

The loss is next-token cross-entropy on the target tokens only: prompt tokens carry the label -100
(``models.generation.Renderer.encode``). Batches are length-grouped (transformers' ``get_length_grouped_indices``)
or packed (several examples per row, attention kept inside each). The dev set's target loss picks the epoch
and stops training early; the untouched model is epoch 0, so a fine-tune that only hurts is not kept.
"""

from __future__ import annotations

from pathlib import Path

import torch

from taskfit.config import (
    GenerationFullConfig,
    GenerationLoraConfig,
    GenerationPromptTuningConfig,
    SupervisedFinetuneBase,
)
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.models.backbones import load_backbone, resolve
from taskfit.models.generation import pack, packed_batch, padded_batch, target_nll
from taskfit.strategies.base import Context, count_parameters, write_strategy_file
from taskfit.strategies.generation import GenerationModel, Generations, require_causal_lm
from taskfit.strategies.tuning import (
    ATTENTION_TARGETS,
    attach_tuning,
    resolve_targets,
    save_tuning,
    tuning_of,
)
from taskfit.training.loop import fit_epochs, settings_for, trainable_state
from taskfit.training.optim import adamw


def no_demos(example: Example) -> list[Example]:
    return []


class SupervisedFinetune:
    def __init__(self, config: SupervisedFinetuneBase, ctx: Context, saved_dir: Path | None = None) -> None:
        require_causal_lm(config, ctx)
        self.config, self.ctx, self.log = config, ctx, []
        backbone = load_backbone(
            config.backbone, "causal-lm", ctx.backbones.trust_remote_code, ctx.backbones.device
        )
        self.model = GenerationModel(backbone, config, ctx)
        self.lm = backbone.model
        uses_peft = (
            tuning_of(config) != "full"
        )  # the registry entry's tuning method: full, lora, prompt-tuning
        self.peft_model = attach_tuning(
            self.lm, saved_dir, self._peft_config if uses_peft else None, ctx.seed
        )
        self.net = self.peft_model or self.lm  # what forward/generate go through
        self.net.eval()

    def _peft_config(self):
        from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType

        c = self.config
        if isinstance(c, GenerationLoraConfig):
            return LoraConfig(
                task_type=TaskType.CAUSAL_LM,
                r=c.r,
                lora_alpha=c.alpha,
                lora_dropout=c.lora_dropout,
                target_modules=resolve_targets(self.lm, c.target_modules, ATTENTION_TARGETS),
                bias="none",
            )
        assert isinstance(c, GenerationPromptTuningConfig)
        text = {
            "prompt_tuning_init": PromptTuningInit.TEXT,
            "prompt_tuning_init_text": c.init_text,
            "tokenizer_name_or_path": resolve(c.backbone),
        }
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=c.num_virtual_tokens,
            **(text if c.init_text else {"prompt_tuning_init": PromptTuningInit.SAMPLE_VOCAB}),
        )

    def _batches(self, encoded) -> callable:
        """How one epoch's example indices are grouped into batches."""
        c = self.config
        lengths = [len(e) for e in encoded]
        if c.batching == "packed":

            def packed(generator: torch.Generator) -> list[list[int]]:
                budget = c.batch_size * c.max_length  # tokens per batch, as batch_size full rows
                batches, current, used = [], [], 0
                for i in torch.randperm(len(encoded), generator=generator).tolist():
                    if current and used + lengths[i] > budget:
                        batches.append(current)
                        current, used = [], 0
                    current.append(i)
                    used += lengths[i]
                return batches + ([current] if current else [])

            return packed
        if c.batching == "length-grouped":
            from transformers.trainer_pt_utils import get_length_grouped_indices

            def grouped(generator: torch.Generator) -> list[list[int]]:
                order = get_length_grouped_indices(lengths, c.batch_size, generator=generator)
                return [order[i : i + c.batch_size] for i in range(0, len(order), c.batch_size)]

            return grouped
        return lambda g: [b.tolist() for b in torch.randperm(len(encoded), generator=g).split(c.batch_size)]

    def batch_loss(self, items) -> torch.Tensor:
        """Mean NLL per target token of one batch of encoded examples (packed into rows if configured)."""
        pad = self.model.pad_id
        if self.config.batching == "packed":
            batch = packed_batch(pack(items, self.config.max_length), pad)
        else:
            batch = padded_batch(items, pad)
        nll, count = target_nll(self.net, batch)
        return nll / max(count, 1)

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        c = self.config
        if not train:
            raise TaskfitError(f"{c.run_id}: fine-tuning needs training pairs (shots > 0)")
        encoded = self.model.encode(train, no_demos)
        index = {id(e): i for i, e in enumerate(train)}
        params = [p for p in self.net.parameters() if p.requires_grad]
        make_batches = self._batches(encoded)
        steps = len(make_batches(torch.Generator().manual_seed(0))) * c.epochs
        fit_epochs(
            adamw(params, fused=self.ctx.run.fused_optimizer, lr=c.lr, weight_decay=c.weight_decay),
            self.net,
            lambda batch: self.batch_loss([encoded[index[id(e)]] for e in batch]),
            train,
            dev,
            dev_accuracy=lambda examples: self.perplexity(examples)["loss"],
            snapshot=lambda: trainable_state(self.net),
            restore=lambda state: self.net.load_state_dict(state, strict=False),
            set_train_mode=self.net.train,
            settings=settings_for(
                c, self.ctx, grad_accumulation=c.grad_accumulation, metric="dev_loss", higher_is_better=False
            ),
            log=self.log,
            advance=self.ctx.advance(f"{c.run_id} train", steps),
            evaluate_untrained=True,
            make_batches=make_batches,
        )
        self.net.eval()

    def demos_for(self, example: Example) -> list[Example]:
        return []

    def predict(self, examples: list[Example]) -> Generations:
        return self.model.generate(self.net, examples, no_demos, f"{self.config.run_id} generate")

    def perplexity(self, examples: list[Example]) -> dict[str, float]:
        was_training = self.net.training
        self.net.eval()
        try:
            return self.model.perplexity(self.net, examples, no_demos, f"{self.config.run_id} perplexity")
        finally:
            self.net.train(was_training)

    def trainable_parameters(self) -> tuple[int, int]:
        return count_parameters(self.net)

    def save(self, directory: Path) -> None:
        save_tuning(directory, self.peft_model, self.lm)
        write_strategy_file(directory, self.config, self.ctx, {"task": "generation"})

    @classmethod
    def load(cls, directory: Path, config, ctx: Context, saved: dict) -> SupervisedFinetune:
        return cls(config, ctx, saved_dir=directory)


__all__ = ["GenerationFullConfig", "SupervisedFinetune"]
