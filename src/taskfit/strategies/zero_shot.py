"""zero-shot: no training. Causal LM: score each label's words at the answer slot.
Encoder: cosine similarity between the text's and each label description's mean-pooled embedding."""

from __future__ import annotations

from pathlib import Path

from taskfit.config import ZeroShotConfig
from taskfit.data.readers import Example
from taskfit.models.embeddings import embed_texts
from taskfit.models.lm_scoring import label_scorer
from taskfit.models.token_budget import (
    DEFAULT_ENCODER_MAX_LENGTH,
    NO_DEMONSTRATIONS,
    Tally,
    count_over,
    prompt_budget,
    query,
)
from taskfit.prompts.calibration import correct
from taskfit.strategies.base import (
    Context,
    Predictions,
    count_parameters,
    probs_to_predictions,
    write_strategy_file,
)
from taskfit.strategies.prompt_search import (
    load_members,
    predict_with_members,
    run_prompt_search,
    save_members,
)

# Cosine similarities of sentence embeddings differ by a few hundredths; a temperature turns them into
# usable probabilities (the argmax, and so accuracy, does not depend on it).
SIMILARITY_TEMPERATURE = 0.05


class ZeroShot:
    def __init__(self, config: ZeroShotConfig, ctx: Context) -> None:
        self.config, self.ctx, self.log = config, ctx, []
        self.backbone = ctx.backbones.get(config.backbone)
        if self.backbone.kind == "causal-lm":
            self.template, self.verbalizer = ctx.template(), ctx.verbalizer()
        self.truncation: dict = {}  # what the last predict cut to fit max_length (Tally.summary)
        self.prompt_members: list = []  # prompt_ensemble: the prompts whose probabilities are averaged

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        """Nothing to train; with prompt_search, the prompt is chosen on dev."""
        if self.backbone.kind == "causal-lm":
            run_prompt_search(self, self.backbone.model, self.backbone.tokenizer, train, dev)

    def label_descriptions(self) -> list[str]:
        prompt = self.ctx.prompt
        out = []
        for label in self.ctx.labels:
            if prompt and label in prompt.label_descriptions:
                out.append(prompt.label_descriptions[label])
            elif prompt and prompt.verbalizer.get(label):
                out.append(prompt.verbalizer[label][0].strip())
            else:
                out.append(label)
        return out

    def predict(self, examples: list[Example]) -> Predictions:
        return predict_with_members(self, examples, self._predict_one)

    def _predict_one(self, examples: list[Example]) -> Predictions:
        model, tok = self.backbone.model, self.backbone.tokenizer
        if self.backbone.kind == "encoder":
            length = self.config.max_length or DEFAULT_ENCODER_MAX_LENGTH
            inputs, descriptions = [e.text for e in examples], self.label_descriptions()
            texts = embed_texts(model, tok, inputs, max_length=length)
            labels = embed_texts(model, tok, descriptions, max_length=length)
            cut = count_over(tok, inputs, length)
            self._record(
                {"max_length": length, "texts_truncated": cut + count_over(tok, descriptions, length)}
                | {"inputs_truncated": cut, "inputs": len(inputs)}
            )
            return probs_to_predictions(texts @ labels.T / SIMILARITY_TEMPERATURE, self.ctx.labels)
        advance = self.ctx.advance(f"{self.config.run_id} predict", len(examples))

        score = label_scorer(model, tok, self.verbalizer, len(self.ctx.labels), self.config)
        budget = prompt_budget(model, tok, self.config.max_length, self.verbalizer)
        tally = Tally(budget.max_length)
        prompts = []
        for i, e in enumerate(examples):
            fitted = budget.fit(NO_DEMONSTRATIONS, query(self.template, e))
            tally.add(i, fitted)
            prompts.append(fitted.prompt)
        self._record(tally.summary())

        scores = score(prompts, advance)
        scores = correct(score, scores, self.template, self.config.calibration)
        return probs_to_predictions(scores, self.ctx.labels)

    def _record(self, summary: dict) -> None:
        self.truncation = summary
        if summary["texts_truncated"]:
            self.log.append({"event": "truncated", **summary})

    def trainable_parameters(self) -> tuple[int, int]:
        return 0, count_parameters(self.backbone.model)[1]

    def save(self, directory: Path) -> None:
        write_strategy_file(directory, self.config, self.ctx, save_members(self))

    @classmethod
    def load(cls, directory: Path, config: ZeroShotConfig, ctx: Context, saved: dict) -> ZeroShot:
        strategy = cls(config, ctx)
        load_members(strategy, saved)
        return strategy
