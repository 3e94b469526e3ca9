"""Prompt search: score candidate templates x verbalizers on the few-shot dev set and keep the best.

Label-word search follows LM-BFF (Gao et al. 2021): for each class, rank vocabulary words by the LM's
log-probability at the answer slot averaged over that class's training examples, minus the average over
the other classes (so words every class likes, such as " the", do not win), and offer the top words as
candidate verbalizers, judged on dev like any other candidate. Written by hand: no library does this.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import torch

from taskfit.config import PromptConfig, PromptSearchConfig
from taskfit.data.readers import Example
from taskfit.models.lm_scoring import next_token_logprobs
from taskfit.models.token_budget import NO_DEMONSTRATIONS, TokenBudget, prompt_budget, query
from taskfit.prompts import Template
from taskfit.strategies.base import Predictions, probs_to_predictions

WORD = re.compile(r"^ [A-Za-z]{3,}$")  # a whole word with its leading space, as verbalizers need


def search_label_words(
    model,
    tokenizer,
    template: Template,
    train: list[Example],
    labels: list[str],
    n_candidates: int,
    budget: TokenBudget | None = None,
) -> list[dict[str, list[str]]]:
    """``n_candidates`` verbalizers: the i-th takes each label's i-th best word. ``budget``: the strategy's
    token budget, which the training prompts are cut to (their inputs; the template stays whole)."""
    if budget is None:
        prompts = [template.prompt(e) for e in train]
    else:
        prompts = [budget.fit(NO_DEMONSTRATIONS, query(template, e)).prompt for e in train]
    logp = next_token_logprobs(model, tokenizer, prompts)  # (N, V)
    per_label = torch.stack(
        [logp[[i for i, e in enumerate(train) if e.label == lab]].mean(0) for lab in labels]
    )  # (C, V)
    others = (per_label.sum(0, keepdim=True) - per_label) / max(len(labels) - 1, 1)
    contrast = per_label - others  # (C, V)
    vocab = tokenizer.convert_ids_to_tokens(list(range(logp.shape[1])))
    words = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in vocab]
    allowed = torch.tensor([bool(WORD.match(w)) for w in words])
    contrast[:, ~allowed] = float("-inf")
    ranked: dict[str, list[str]] = {}
    taken: set[str] = set()
    for c, label in enumerate(labels):
        ranked[label] = []
        for idx in contrast[c].argsort(descending=True).tolist():
            if words[idx] not in taken:
                ranked[label].append(words[idx])
                taken.add(words[idx])
            if len(ranked[label]) == n_candidates:
                break
    return [{lab: [ranked[lab][i]] for lab in labels if i < len(ranked[lab])} for i in range(n_candidates)]


def candidates(
    base: PromptConfig, search: PromptSearchConfig, found: list[dict[str, list[str]]]
) -> list[PromptConfig]:
    templates = [base.template, *search.templates]
    verbalizers = [base.verbalizer, *search.verbalizers, *found]
    out = []
    for template, verbalizer in itertools.product(dict.fromkeys(templates), verbalizers):
        prompt = base.model_copy(update={"template": template, "verbalizer": verbalizer})
        if prompt not in out:
            out.append(prompt)
    return out


def choose_prompt(
    prompts: list[PromptConfig],
    dev_accuracy: Callable[[PromptConfig], float],
    log: list[dict],
    keep: int = 1,
) -> list[PromptConfig]:
    """The ``keep`` candidates with the best dev accuracy, best first (on ties the earlier one: the user's own
    prompt comes first)."""
    scored = []
    for prompt in prompts:
        scored.append((dev_accuracy(prompt), prompt))
        log.append(
            {
                "event": "prompt_candidate",
                "dev_accuracy": scored[-1][0],
                "template": prompt.template,
                "verbalizer": prompt.verbalizer,
            }
        )
    ranked = sorted(range(len(scored)), key=lambda i: -scored[i][0])[:keep]  # stable: ties keep their order
    best_score, best = scored[ranked[0]]
    log.append(
        {
            "event": "prompt_chosen",
            "dev_accuracy": best_score,
            "template": best.template,
            "verbalizer": best.verbalizer,
            "candidates": len(prompts),
        }
    )
    if keep > 1:
        log.append(
            {
                "event": "prompt_ensemble",
                "members": len(ranked),
                "dev_accuracy": [scored[i][0] for i in ranked],
                "prompts": [scored[i][1].model_dump(mode="json") for i in ranked],
            }
        )
    return [scored[i][1] for i in ranked]


def apply_prompt(strategy, prompt: PromptConfig) -> None:
    """Point a prompting strategy at ``prompt`` (its context, template and verbalizer)."""
    from dataclasses import replace

    strategy.ctx = replace(strategy.ctx, prompt=prompt)
    strategy.template, strategy.verbalizer = strategy.ctx.template(), strategy.ctx.verbalizer()


def run_prompt_search(strategy, model, tokenizer, train: list[Example], dev: list[Example]) -> None:
    """If the strategy's config asks for it, pick its prompt on ``dev`` (never on test)."""
    search = strategy.config.prompt_search
    if search is None:
        return
    if not dev:
        strategy.log.append({"event": "prompt_search_skipped", "reason": "no dev examples"})
        return
    labels = strategy.ctx.labels
    # strategies with a max_length option (zero-shot, in-context) cut the search's prompts to it too
    budget = (
        prompt_budget(model, tokenizer, strategy.config.max_length)
        if "max_length" in type(strategy.config).model_fields
        else None
    )
    found = (
        search_label_words(
            model, tokenizer, strategy.template, train, labels, search.auto_label_words, budget
        )
        if search.auto_label_words
        else []
    )
    found = [v for v in found if len(v) == len(labels)]

    def dev_accuracy(prompt: PromptConfig) -> float:
        apply_prompt(strategy, prompt)
        predicted = strategy.predict(dev).labels
        return sum(p == e.label for p, e in zip(predicted, dev)) / len(dev)

    keep = getattr(strategy.config, "prompt_ensemble", None) or 1
    strategy.prompt_members = []  # each candidate alone while they are scored
    chosen = choose_prompt(candidates(strategy.ctx.prompt, search, found), dev_accuracy, strategy.log, keep)
    apply_prompt(strategy, chosen[0])
    strategy.prompt_members = chosen if len(chosen) > 1 else []


def predict_with_members(strategy, examples: list[Example], predict_one) -> Predictions:
    """A prompt ensemble's prediction: the label probabilities of each member prompt (``prompt_members``,
    chosen by ``run_prompt_search``) averaged; without members, ``predict_one`` as it is. Written by hand:
    the prompting libraries score one prompt at a time."""
    members = getattr(strategy, "prompt_members", [])
    if len(members) < 2:
        return predict_one(examples)
    chosen, total = strategy.ctx.prompt, None
    try:
        for prompt in members:
            apply_prompt(strategy, prompt)
            probs = predict_one(examples).probs.float()
            total = probs if total is None else total + probs
    finally:
        apply_prompt(strategy, chosen)
    assert total is not None
    return probs_to_predictions(torch.log(total / len(members)), strategy.ctx.labels)


def save_members(strategy) -> dict:
    """What ``write_strategy_file`` keeps of a prompt ensemble (nothing without one)."""
    members = getattr(strategy, "prompt_members", [])
    return {"prompt_members": [p.model_dump(mode="json") for p in members]} if members else {}


def load_members(strategy, saved: dict) -> None:
    strategy.prompt_members = [PromptConfig.model_validate(p) for p in saved.get("prompt_members", [])]
