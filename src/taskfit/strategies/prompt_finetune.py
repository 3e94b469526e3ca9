"""prompt-finetune: PET / LM-BFF-style prompt-based fine-tuning of a causal LM.

The template and verbalizer define the classifier: the loss is cross-entropy over the label words'
log-probabilities at the answer slot (the same scores zero-shot uses), so training starts from the
zero-shot model instead of a random head. ``tuning: lora`` trains LoRA adapters (peft) on the attention
projections; ``tuning: full`` trains every weight. Demonstrations can be placed in the context.
"""

from __future__ import annotations

from pathlib import Path

import torch

from taskfit.config import PromptFinetuneConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.models.backbones import detect_kind, load_backbone
from taskfit.models.lm_scoring import verbalizer_scores
from taskfit.prompts.calibration import correct, fit_label_bias
from taskfit.prompts.demonstrations import render_demonstrations, select_fixed
from taskfit.strategies.base import (
    Context,
    Predictions,
    balanced_class_weights,
    count_parameters,
    probs_to_predictions,
    read_demonstrations,
    save_demonstrations,
    write_strategy_file,
)
from taskfit.strategies.prompt_search import run_prompt_search
from taskfit.strategies.tuning import (
    ATTENTION_TARGETS,
    attach_tuning,
    resolve_targets,
    save_tuning,
)
from taskfit.training.loop import accuracy, fit_epochs, settings_for, trainable_state
from taskfit.training.optim import adamw


class PromptFinetune:
    def __init__(self, config: PromptFinetuneConfig, ctx: Context, saved_dir: Path | None = None) -> None:
        self.config, self.ctx, self.log = config, ctx, []
        if detect_kind(config.backbone, ctx.backbones.trust_remote_code) != "causal-lm":
            raise TaskfitError(
                f"prompt-finetune needs a causal LM backbone; '{config.backbone}' is an encoder"
            )
        backbone = load_backbone(
            config.backbone, "causal-lm", ctx.backbones.trust_remote_code, ctx.backbones.device
        )
        # self.lm is always the plain causal LM: peft injects LoRA layers into it in place, and scoring
        # calls its decoder stack directly.
        self.lm, self.tokenizer = backbone.model, backbone.tokenizer
        self.template, self.verbalizer = ctx.template(), ctx.verbalizer()
        self.demos: list[Example] = []
        self.label_bias: torch.Tensor | None = None  # calibration: dev, fitted after training
        self.calibrating = False

        def lora_config():
            from peft import LoraConfig

            return LoraConfig(
                r=config.r,
                lora_alpha=config.alpha,
                lora_dropout=config.lora_dropout,
                target_modules=resolve_targets(self.lm, config.target_modules, ATTENTION_TARGETS),
                bias="none",
            )

        self.peft_model = attach_tuning(
            self.lm, saved_dir, lora_config if config.tuning == "lora" else None, ctx.seed
        )
        if saved_dir is not None:
            self.demos = read_demonstrations(saved_dir)

    def _prefix(self) -> str | None:
        return render_demonstrations(self.template, self.verbalizer, self.demos) if self.demos else None

    def _label_scores(self, examples: list[Example], grad: bool, on_batch=None) -> torch.Tensor:
        """(N, C) label log-scores; with ``grad`` one batch that keeps the graph, else cached-prefix inference."""
        return self._prompt_scores([self.template.prompt(e) for e in examples], grad, on_batch)

    def _prompt_scores(self, prompts: list[str], grad: bool = False, on_batch=None) -> torch.Tensor:
        return verbalizer_scores(
            self.lm,
            self.tokenizer,
            prompts,
            self.verbalizer,
            len(self.ctx.labels),
            self.config.scoring == "mean",
            shared_prefix=self._prefix(),
            reuse_prefix_cache=not grad,
            batch_size=max(len(prompts), 1) if grad else 16,
            on_batch=on_batch,
            grad=grad,
        )

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        c = self.config
        if c.demos_per_class:
            self.demos = select_fixed(train, c.demos_per_class, self.ctx.labels, "balanced", self.ctx.seed)
        run_prompt_search(self, self.lm, self.tokenizer, train, dev)  # judged on the untrained model
        label_index = {lab: i for i, lab in enumerate(self.ctx.labels)}
        params = [p for p in self.lm.parameters() if p.requires_grad]
        weight = (
            balanced_class_weights(train, list(self.ctx.labels)) if c.class_weight == "balanced" else None
        )

        def batch_loss(batch: list[Example]) -> torch.Tensor:
            scores = self._label_scores(batch, grad=True)  # (B, C) log-probabilities of the labels
            targets = torch.tensor([label_index[e.label] for e in batch])
            w = None if weight is None else weight.to(scores.device)
            return torch.nn.functional.cross_entropy(
                scores, targets, weight=w, label_smoothing=c.label_smoothing
            )

        fit_epochs(
            adamw(params, fused=self.ctx.run.fused_optimizer, lr=c.lr, weight_decay=c.weight_decay),
            self.lm,
            batch_loss,
            train,
            dev,
            dev_accuracy=lambda examples: accuracy(self.predict(examples).labels, examples),
            snapshot=lambda: trainable_state(self.lm),
            restore=lambda state: self.lm.load_state_dict(state, strict=False),
            set_train_mode=self.lm.train,
            settings=settings_for(c, self.ctx),
            log=self.log,
            advance=self.ctx.advance(f"{c.run_id} train", -(-len(train) // c.batch_size) * c.epochs),
            evaluate_untrained=True,  # fine-tuning must beat the untouched zero-/few-shot model on dev
        )
        self.lm.eval()
        if c.calibration == "dev":
            if not dev:
                raise TaskfitError(f"{c.run_id}: calibration: dev needs a dev set")
            gold = torch.tensor([label_index[e.label] for e in dev])
            self.label_bias = fit_label_bias(self._label_scores(dev, grad=False), gold)
            self.log.append({"event": "calibration", "method": "dev", "label_bias": self.label_bias.tolist()})
        self.calibrating = True  # from here on, predictions are calibrated (not while choosing the epoch)

    def predict(self, examples: list[Example]) -> Predictions:
        advance = self.ctx.advance(f"{self.config.run_id} predict", len(examples))
        scores = self._label_scores(examples, grad=False, on_batch=advance)
        if self.calibrating and self.config.calibration == "contextual":
            scores = correct(self._prompt_scores, scores, self.template, "contextual")
        elif self.calibrating and self.label_bias is not None:
            scores = torch.log_softmax(scores.float(), dim=-1) + self.label_bias
        return probs_to_predictions(scores, self.ctx.labels)

    def trainable_parameters(self) -> tuple[int, int]:
        return count_parameters(self.lm)

    def save(self, directory: Path) -> None:
        save_tuning(directory, self.peft_model, self.lm)
        save_demonstrations(directory, self.demos)
        bias = {"label_bias": self.label_bias.tolist()} if self.label_bias is not None else {}
        write_strategy_file(directory, self.config, self.ctx, bias)

    @classmethod
    def load(cls, directory: Path, config: PromptFinetuneConfig, ctx: Context, saved: dict) -> PromptFinetune:
        strategy = cls(config, ctx, saved_dir=directory)
        if saved.get("label_bias") is not None:
            strategy.label_bias = torch.tensor(saved["label_bias"])
        strategy.calibrating = True
        return strategy
