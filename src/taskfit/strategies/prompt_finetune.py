"""prompt-finetune: PET / LM-BFF-style prompt-based fine-tuning of a causal LM.

The template and verbalizer define the classifier: the loss is cross-entropy over the label words'
log-probabilities at the answer slot (the same scores zero-shot uses), so training starts from the
zero-shot model instead of a random head. ``tuning: lora`` trains LoRA adapters (peft) on the attention
projections; ``tuning: full`` trains every weight. Demonstrations can be placed in the context.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from taskfit.config import PromptFinetuneConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.io import save_safetensors_atomic, write_jsonl_atomic
from taskfit.models.backbones import load_backbone
from taskfit.models.lm_scoring import label_scores, score_words
from taskfit.prompts.demonstrations import select_fixed
from taskfit.strategies.base import (
    Context,
    Predictions,
    count_parameters,
    probs_to_predictions,
    write_strategy_file,
)
from taskfit.strategies.peft_encoder import ADAPTER_DIR, ATTENTION_TARGETS, resolve_targets

WEIGHTS_FILE = "model.safetensors"
DEMOS_FILE = "demonstrations.jsonl"


class PromptFinetune:
    uses_training_data = True

    def __init__(self, config: PromptFinetuneConfig, ctx: Context, saved_dir: Path | None = None) -> None:
        self.config, self.ctx, self.log = config, ctx, []
        backbone = load_backbone(
            config.backbone, "causal-lm", ctx.backbones.trust_remote_code, ctx.backbones.device
        )
        if backbone.kind != "causal-lm":
            raise TaskfitError(
                f"prompt-finetune needs a causal LM backbone; '{config.backbone}' is an encoder"
            )
        # self.lm is always the plain causal LM: peft injects LoRA layers into it in place, and scoring
        # calls its decoder stack directly.
        self.lm, self.tokenizer = backbone.model, backbone.tokenizer
        self.template, self.verbalizer = ctx.template(), ctx.verbalizer()
        self.demos: list[Example] = []
        self.peft_model = None
        if config.tuning == "lora":
            from peft import LoraConfig, PeftModel, get_peft_model

            if saved_dir is not None:
                self.peft_model = PeftModel.from_pretrained(self.lm, str(saved_dir / ADAPTER_DIR))
            else:
                targets = resolve_targets(self.lm, config.target_modules, ATTENTION_TARGETS)
                lora = LoraConfig(
                    r=config.r,
                    lora_alpha=config.alpha,
                    lora_dropout=config.lora_dropout,
                    target_modules=targets,
                    bias="none",
                )
                self.peft_model = get_peft_model(self.lm, lora)
        elif saved_dir is not None:
            from safetensors.torch import load_model

            load_model(self.lm, str(saved_dir / WEIGHTS_FILE), device=str(self.lm.device))
        if saved_dir is not None and (saved_dir / DEMOS_FILE).exists():
            lines = (saved_dir / DEMOS_FILE).read_text(encoding="utf-8").splitlines()
            self.demos = [Example(**json.loads(line)) for line in lines if line.strip()]

    def _prefix(self) -> str | None:
        if not self.demos:
            return None
        sep = "\n\n"
        return "".join(
            self.template.with_answer(d, self.verbalizer.first_word(d.label)) + sep for d in self.demos
        )

    def _label_scores(self, examples: list[Example], grad: bool) -> torch.Tensor:
        ws = score_words(
            self.lm,
            self.tokenizer,
            [self.template.prompt(e) for e in examples],
            list(self.verbalizer.words),
            shared_prefix=self._prefix(),
            reuse_prefix_cache=not grad,
            batch_size=max(len(examples), 1),
            grad=grad,
        )
        return label_scores(
            ws, list(self.verbalizer.word_labels), len(self.ctx.labels), self.config.scoring == "mean"
        )

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        from transformers import get_linear_schedule_with_warmup

        c = self.config
        if c.demos_per_class:
            self.demos = select_fixed(train, c.demos_per_class, self.ctx.labels, "balanced", self.ctx.seed)
        torch.manual_seed(self.ctx.seed)
        generator = torch.Generator().manual_seed(self.ctx.seed)
        label_index = {lab: i for i, lab in enumerate(self.ctx.labels)}
        params = [p for p in self.lm.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        steps_per_epoch = -(-len(train) // c.batch_size)
        total = steps_per_epoch * c.epochs
        scheduler = get_linear_schedule_with_warmup(optimizer, int(c.warmup_ratio * total), total)
        advance = self.ctx.advance(f"{c.run_id} train", total)
        best, best_state, best_epoch, stale = -1.0, None, 0, 0
        if dev:  # epoch 0 = the untouched model: fine-tuning must beat zero-/few-shot on dev to be kept
            best = self._accuracy(dev)
            best_state = self._trained_state()
            self.log.append({"epoch": 0, "dev_accuracy": best})
        for epoch in range(1, c.epochs + 1):
            self.lm.train()
            started, losses = time.perf_counter(), []
            for idx in torch.randperm(len(train), generator=generator).split(c.batch_size):
                batch = [train[i] for i in idx.tolist()]
                scores = self._label_scores(batch, grad=True)  # (B, C) log-probabilities of the labels
                targets = torch.tensor([label_index[e.label] for e in batch])
                loss = torch.nn.functional.cross_entropy(scores, targets, label_smoothing=c.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                advance(1)
            record = {
                "epoch": epoch,
                "train_loss": sum(losses) / len(losses),
                "seconds": time.perf_counter() - started,
            }
            if dev:
                record["dev_accuracy"] = self._accuracy(dev)
                if record["dev_accuracy"] > best:
                    best, best_epoch, stale, best_state = (
                        record["dev_accuracy"],
                        epoch,
                        0,
                        self._trained_state(),
                    )
                else:
                    stale += 1
            self.log.append(record)
            if dev and stale >= c.patience:
                advance((c.epochs - epoch) * steps_per_epoch)
                break
        if best_state is not None:
            self.lm.load_state_dict(best_state, strict=False)
            self.log.append({"event": "restored_best", "epoch": best_epoch, "dev_accuracy": best})
        self.lm.eval()

    def _trained_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.lm.named_parameters() if p.requires_grad}

    def _accuracy(self, examples: list[Example]) -> float:
        preds = self.predict(examples)
        return sum(p == e.label for p, e in zip(preds.labels, examples)) / len(examples)

    def predict(self, examples: list[Example]) -> Predictions:
        advance = self.ctx.advance(f"{self.config.run_id} predict", len(examples))
        ws = score_words(
            self.lm,
            self.tokenizer,
            [self.template.prompt(e) for e in examples],
            list(self.verbalizer.words),
            shared_prefix=self._prefix(),
            batch_size=16,
            on_batch=advance,
        )
        scores = label_scores(
            ws, list(self.verbalizer.word_labels), len(self.ctx.labels), self.config.scoring == "mean"
        )
        return probs_to_predictions(scores, self.ctx.labels)

    def trainable_parameters(self) -> tuple[int, int]:
        return count_parameters(self.lm)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.peft_model is not None:
            self.peft_model.save_pretrained(directory / ADAPTER_DIR)
        else:
            save_safetensors_atomic(self.lm, directory / WEIGHTS_FILE)
        if self.demos:
            write_jsonl_atomic(directory / DEMOS_FILE, [asdict(e) for e in self.demos])
        write_strategy_file(directory, self.config, self.ctx)

    @classmethod
    def load(cls, directory: Path, config: PromptFinetuneConfig, ctx: Context, saved: dict) -> PromptFinetune:
        return cls(config, ctx, saved_dir=directory)
