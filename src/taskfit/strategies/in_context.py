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
from taskfit.models import token_budget
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
from taskfit.strategies.prompt_search import (
    load_members,
    predict_with_members,
    run_prompt_search,
    save_members,
)


class InContext:
    def __init__(self, config: InContextConfig, ctx: Context) -> None:
        self.config, self.ctx, self.log = config, ctx, []
        self.backbone = ctx.backbones.get(config.backbone)
        if self.backbone.kind != "causal-lm":
            raise TaskfitError(f"in-context needs a causal LM backbone; '{config.backbone}' is an encoder")
        self.template, self.verbalizer = ctx.template(), ctx.verbalizer()
        self.pool: list[Example] = []  # the demonstrations (fixed selection) or the candidates (similar)
        self.sets: list[list[Example]] = []  # demo_sets: every demonstration set (the first is ``pool``)
        # the calibration predict applies: the config's, or for auto the one chosen on dev in fit
        self.calibration = "none" if config.calibration == "auto" else config.calibration
        self.order_predictions: list[list[str]] = []  # the last predict's labels per demonstration order
        self.truncation: dict = {}
        self.prompt_members: list = []  # prompt_ensemble: the prompts whose probabilities are averaged
        # label scores already computed, by (verbalizer, prefix, prompts); None: nothing kept. Set by the
        # cross-validated cell, which predicts the same examples under both calibrations: the second is then
        # a correction of scores already there, not another pass of the LM.
        self.scored: dict | None = None

    def _render(self, demos: list[Example]) -> str:
        return render_demonstrations(self.template, self.verbalizer, demos, self.config.separator)

    def fit(self, train: list[Example], dev: list[Example]) -> None:
        """Choose demonstrations; nothing is trained."""
        self.sets = []
        if self.config.selection == "similar":
            self.pool = list(train)
        else:
            c = self.config
            self.pool = select_fixed(
                train, c.demos_per_class, self.ctx.labels, c.selection, self.ctx.seed, c.demo_order
            )
            if c.demo_sets:
                self.sets = more_demonstration_sets(train, self.pool, c, self.ctx.labels, self.ctx.seed)
        self.log.append(
            {
                "event": "demonstrations",
                "count": len(self.pool),
                "selection": self.config.selection,
                **({"sets": [len(s) for s in self.sets]} if self.sets else {}),
            }
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

    @property
    def demonstrations(self) -> list[Example]:
        """Every example a prompt shows (all of ``demo_sets``'s sets): none of them can score the model."""
        return [e for s in self.sets for e in s] if self.sets else list(self.pool)

    def predict(self, examples: list[Example]) -> Predictions:
        if len(self.sets) < 2:
            return predict_with_members(self, examples, self._predict_one)
        # demo_sets: each set's prefix in turn, label probabilities averaged (calibrated per prefix)
        first, total = self.pool, None
        try:
            for demos in self.sets:
                self.pool = demos
                probs = predict_with_members(self, examples, self._predict_one).probs.float()
                total = probs if total is None else total + probs
        finally:
            self.pool = first
        assert total is not None
        return probs_to_predictions(torch.log(total / len(self.sets)), self.ctx.labels)

    def _predict_one(self, examples: list[Example]) -> Predictions:
        model, tok = self.backbone.model, self.backbone.tokenizer
        queries = [token_budget.query(self.template, e) for e in examples]
        budget = token_budget.prompt_budget(model, tok, self.config.max_length, self.verbalizer)
        tally = token_budget.Tally(budget.max_length)
        advance = self.ctx.advance(f"{self.config.run_id} predict", len(examples))
        if self.config.selection == "similar":
            embedder = self.ctx.backbones.get(self.config.embedder, "encoder")
            pool_emb = embed_texts(embedder.model, embedder.tokenizer, [e.text for e in self.pool])
            query_emb = embed_texts(embedder.model, embedder.tokenizer, [e.text for e in examples])
            n = self.config.demos_per_class * len(self.ctx.labels)
            neighbours = select_similar(pool_emb, query_emb, n)
            prompts = []
            for i, (idx, q) in enumerate(zip(neighbours, queries)):
                demos = self._pieces([self.pool[j] for j in idx])
                fitted = budget.fit(demos, q)
                tally.add(i, fitted, demos)
                prompts.append(fitted.prefix + fitted.prompt)
            orders: list[dict[str | None, list[tuple[int, str]]]] = [{None: list(enumerate(prompts))}]
        else:
            orders = [self._fit_order(budget, tally, order, queries) for order in self.orders()]
        self._record(tally.summary())

        def scorer(prefix: str | None):
            score = label_scorer(
                model,
                tok,
                self.verbalizer,
                len(self.ctx.labels),
                self.config,
                shared_prefix=prefix,
                reuse_prefix_cache=self.config.reuse_prefix_cache,
            )
            return score if self.scored is None else self._remembered(score, prefix)

        self.order_predictions = []
        probs = None
        for groups in orders:  # one order unless order_ensemble > 1
            scores = torch.empty(len(examples), len(self.ctx.labels))
            # one group (one shared prefix) unless the budget cut the demonstrations differently per query;
            # calibration is measured after each group's own prefix
            for prefix, members in groups.items():
                score = scorer(prefix)
                rows = [i for i, _ in members]
                group_scores = score([p for _, p in members], advance if probs is None else None)
                scores[rows] = correct(score, group_scores, self.template, self.calibration).float()
            order_probs = torch.softmax(scores, dim=-1)
            self.order_predictions.append([self.ctx.labels[i] for i in order_probs.argmax(-1).tolist()])
            probs = order_probs if probs is None else probs + order_probs
        assert probs is not None
        return probs_to_predictions(torch.log(probs / len(self.order_predictions)), self.ctx.labels)

    def _remembered(self, score, prefix: str | None):
        """``score`` that looks in ``self.scored`` first and keeps what it computes there."""
        kept = self.scored
        assert kept is not None

        def run(prompts: list[str], on_batch=None):
            key = (self.verbalizer, prefix, tuple(prompts))
            if key not in kept:
                kept[key] = score(prompts, on_batch)
            elif on_batch is not None:  # the progress bar still advances
                on_batch(len(prompts))
            return kept[key]

        return run

    def _pieces(self, demos: list[Example]) -> token_budget.Filled:
        return token_budget.demonstrations(self.template, self.verbalizer, demos, self.config.separator)

    def _fit_order(
        self, budget, tally, order: list[Example], queries
    ) -> dict[str | None, list[tuple[int, str]]]:
        """The queries' prompts after this demonstration order, fitted to the budget, grouped by their
        (shared) prefix: one group when nothing was cut, as without a budget."""
        demos = self._pieces(order)
        groups: dict[str | None, list[tuple[int, str]]] = {}
        for i, q in enumerate(queries):
            fitted = budget.fit(demos, q)
            tally.add(i, fitted, demos)
            groups.setdefault(fitted.prefix, []).append((i, fitted.prompt))
        return groups

    def _record(self, summary: dict) -> None:
        self.truncation = summary  # what the last predict cut to fit max_length
        if summary["texts_truncated"]:
            self.log.append({"event": "truncated", **summary})

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
        sets = {"demo_set_sizes": [len(s) for s in self.sets]} if self.sets else {}
        write_strategy_file(
            directory, self.config, self.ctx, {"calibration": self.calibration, **sets, **save_members(self)}
        )
        save_demonstrations(directory, self.demonstrations)

    @classmethod
    def load(cls, directory: Path, config: InContextConfig, ctx: Context, saved: dict) -> InContext:
        strategy = cls(config, ctx)
        strategy.pool = read_demonstrations(directory)
        sizes = saved.get("demo_set_sizes") or []
        if sizes:  # demo_sets: the file holds the sets one after another
            shown, start = strategy.pool, 0
            strategy.sets = []
            for size in sizes:
                strategy.sets.append(shown[start : start + size])
                start += size
            strategy.pool = strategy.sets[0]
        strategy.calibration = saved.get("calibration", strategy.calibration)
        load_members(strategy, saved)
        return strategy


def more_demonstration_sets(
    train: list[Example], first: list[Example], c: InContextConfig, labels: list[str], seed: int
) -> list[list[Example]]:
    """``c.demo_sets`` demonstration sets, ``first`` among them: each further set is drawn like the first
    from examples no earlier set shows; a label with too few such examples left draws from all of its own."""
    sets, shown = [list(first)], {id(e) for e in first}
    for i in range(1, c.demo_sets or 1):
        fresh = [e for e in train if id(e) not in shown]
        short = {lab for lab in labels if sum(e.label == lab for e in fresh) < c.demos_per_class}
        candidates = fresh + [e for e in train if e.label in short and id(e) in shown]
        if c.selection == "random" and len(fresh) < c.demos_per_class * len(labels):
            candidates = list(train)
        demos = select_fixed(
            candidates, c.demos_per_class, labels, c.selection, seed + 7919 * i, c.demo_order
        )
        sets.append(demos)
        shown.update(id(e) for e in demos)
    return sets
