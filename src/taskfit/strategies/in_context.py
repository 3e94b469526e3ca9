"""in-context: K demonstrations per class in the prompt, then label-word scoring like zero-shot.

With selection ``random``/``balanced`` every query shares one demonstration prefix; its KV cache is computed
once and reused (``reuse_prefix_cache``). With ``similar`` each query gets its own nearest demonstrations.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from taskfit.config import InContextConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.models.embeddings import embed_texts
from taskfit.models.lm_scoring import label_scorer
from taskfit.prompts.calibration import correct
from taskfit.prompts.demonstrations import render_demonstrations, select_fixed, select_similar
from taskfit.strategies.base import (
    Context,
    Predictions,
    count_parameters,
    probs_to_predictions,
    read_demonstrations,
    save_demonstrations,
    write_strategy_file,
)
from taskfit.strategies.prompt_search import run_prompt_search


class InContext:
    def __init__(self, config: InContextConfig, ctx: Context) -> None:
        self.config, self.ctx, self.log = config, ctx, []
        self.backbone = ctx.backbones.get(config.backbone)
        if self.backbone.kind != "causal-lm":
            raise TaskfitError(f"in-context needs a causal LM backbone; '{config.backbone}' is an encoder")
        self.template, self.verbalizer = ctx.template(), ctx.verbalizer()
        self.pool: list[Example] = []  # the demonstrations (fixed selection) or the candidates (similar)
        # the calibration predict applies: the config's, or for auto the one chosen on dev in fit
        self.calibration = "none" if config.calibration == "auto" else config.calibration
        self.order_predictions: list[list[str]] = []  # the last predict's labels per demonstration order

    def _render(self, demos: list[Example]) -> str:
        return render_demonstrations(self.template, self.verbalizer, demos, self.config.separator)

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        """Choose demonstrations; nothing is trained."""
        if self.config.selection == "similar":
            self.pool = list(train)
        else:
            c = self.config
            self.pool = select_fixed(
                train, c.demos_per_class, self.ctx.labels, c.selection, self.ctx.seed, c.demo_order
            )
        self.log.append(
            {"event": "demonstrations", "count": len(self.pool), "selection": self.config.selection}
        )
        run_prompt_search(self, self.backbone.model, self.backbone.tokenizer, train, dev)
        if self.config.calibration == "auto":
            self.calibration = self._choose_calibration(dev)

    def _choose_calibration(self, dev: list[Example]) -> str:
        """contextual or none, by accuracy on the few-shot dev set (ties: none, the simpler model); none without
        a dev set or a shared prefix. Measured: which one wins depends on the dataset and the number of
        demonstrations (BENCHMARKS.md, issue 11)."""
        if not dev or self.config.selection == "similar":
            reason = "per-query prefixes (selection: similar)" if dev else "no dev set to choose on"
            self.log.append({"event": "calibration", "chosen": "none", "reason": reason})
            return "none"
        scores = {}
        for method in ("none", "contextual"):
            self.calibration = method
            predicted = self.predict(dev).labels
            scores[method] = sum(p == e.label for p, e in zip(predicted, dev)) / len(dev)
        chosen = "contextual" if scores["contextual"] > scores["none"] else "none"
        self.log.append({"event": "calibration", "chosen": chosen, "dev_accuracy": scores})
        return chosen

    def shared_prefix(self) -> str:
        return self._render(self.pool)

    def predict(self, examples: list[Example]) -> Predictions:
        model, tok = self.backbone.model, self.backbone.tokenizer
        prompts = [self.template.prompt(e) for e in examples]
        advance = self.ctx.advance(f"{self.config.run_id} predict", len(examples))
        if self.config.selection == "similar":
            embedder = self.ctx.backbones.get(self.config.embedder, "encoder")
            pool_emb = embed_texts(embedder.model, embedder.tokenizer, [e.text for e in self.pool])
            query_emb = embed_texts(embedder.model, embedder.tokenizer, [e.text for e in examples])
            n = self.config.demos_per_class * len(self.ctx.labels)
            neighbours = select_similar(pool_emb, query_emb, n)
            prompts = [self._render([self.pool[i] for i in idx]) + p for idx, p in zip(neighbours, prompts)]
            prefix = None
        else:
            prefix = self.shared_prefix()

        def scorer(prefix: str | None):
            return label_scorer(
                model,
                tok,
                self.verbalizer,
                len(self.ctx.labels),
                self.config,
                shared_prefix=prefix,
                reuse_prefix_cache=self.config.reuse_prefix_cache,
            )

        self.order_predictions = []
        probs = None
        for order in self.orders():  # one order unless order_ensemble > 1
            score = scorer(self._render(order) if prefix is not None else None)
            scores = correct(
                score,
                score(prompts, advance if probs is None else None),
                self.template,
                self.calibration,
            )
            order_probs = torch.softmax(scores.float(), dim=-1)
            self.order_predictions.append([self.ctx.labels[i] for i in order_probs.argmax(-1).tolist()])
            probs = order_probs if probs is None else probs + order_probs
        assert probs is not None
        return probs_to_predictions(torch.log(probs / len(self.order_predictions)), self.ctx.labels)

    def orders(self) -> list[list[Example]]:
        """The chosen demonstration order, then ``order_ensemble - 1`` seeded permutations of it."""
        orders = [list(self.pool)]
        for r in range(1, self.config.order_ensemble):
            order = list(self.pool)
            random.Random(f"{self.ctx.seed}/order/{r}").shuffle(order)
            orders.append(order)
        return orders

    def diagnostics(self, predicted: list[str], gold: list[str] | None = None) -> dict:
        """How much predictions follow the last demonstration's label (a known in-context bias), and with an
        order ensemble each order's own accuracy (the spread the ensemble averages away)."""
        if self.config.selection == "similar" or not self.pool or not predicted:
            return {}
        last = self.pool[-1].label
        out = {
            "calibration": self.calibration,
            "last_demonstration_label": last,
            "share_predicted_as_last_demonstration": sum(p == last for p in predicted) / len(predicted),
        }
        orders = self.order_predictions
        if gold is not None and len(orders) > 1:
            accs = [sum(p == g for p, g in zip(o, gold)) / len(gold) for o in orders]
            out["per_order_accuracy"] = accs
            out["per_order_spread"] = max(accs) - min(accs)
        return out

    def trainable_parameters(self) -> tuple[int, int]:
        return 0, count_parameters(self.backbone.model)[1]

    def save(self, directory: Path) -> None:
        write_strategy_file(directory, self.config, self.ctx, {"calibration": self.calibration})
        save_demonstrations(directory, self.pool)

    @classmethod
    def load(cls, directory: Path, config: InContextConfig, ctx: Context, saved: dict) -> InContext:
        strategy = cls(config, ctx)
        strategy.pool = read_demonstrations(directory)
        strategy.calibration = saved.get("calibration", strategy.calibration)
        return strategy
