"""Calibrated label scores for prompting: correct an LM's prior preference for some label words.

- ``contextual`` (Zhao et al. 2021, "Calibrate Before Use"): the label distribution the model gives to
  content-free inputs ("N/A", "", "[MASK]") in the same template, after the same demonstrations, is its bias;
  each prediction's probabilities are divided by it (W = diag(p_cf)^-1, b = 0) and renormalised.
- ``pmi`` (domain-conditional PMI, Holtzman et al. 2021): subtract the label's log-probability given the
  domain premise alone (the template's text after the input, e.g. "Sentiment:", after the same
  demonstrations).

Both reduce to "subtract a reference log-distribution over labels"; only the reference prompts differ.
Written by hand: neither paper's method is in a library we use.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from taskfit.data.readers import Example
from taskfit.prompts.template import Template

CONTENT_FREE = ("N/A", "", "[MASK]")
ScoreFn = Callable[[list[str]], torch.Tensor]  # prompts -> (N, C) label log-scores


def reference_prompts(template: Template, method: str) -> list[str]:
    """The prompts whose label distribution is the model's bias under ``method``."""
    if method == "contextual":
        return [template.prompt(Example(text=cf, text_pair=cf)) for cf in CONTENT_FREE]
    if method == "pmi":
        premise = re.split(r"\{text(?:_pair)?\}", template.before_answer)[-1]
        return [premise.lstrip().replace("{{", "{").replace("}}", "}")]
    raise ValueError(f"unknown calibration method {method!r}")


def reference_distribution(score: ScoreFn, prompts: list[str]) -> torch.Tensor:
    """Mean label probabilities over the reference prompts, as log-probabilities (C,)."""
    return torch.log_softmax(score(prompts).float(), dim=-1).exp().mean(0).log()


def calibrate(scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Label log-scores (N, C) corrected by a reference log-distribution (C,); softmax gives p / p_ref,
    renormalised."""
    return torch.log_softmax(scores.float(), dim=-1) - reference


def correct(score: ScoreFn, scores: torch.Tensor, template: Template, method: str) -> torch.Tensor:
    """``scores`` (already computed with ``score``) calibrated by ``method``; unchanged for ``none``."""
    if method == "none":
        return scores
    return calibrate(scores, reference_distribution(score, reference_prompts(template, method)))


def calibrated(score: ScoreFn, prompts: list[str], template: Template, method: str) -> torch.Tensor:
    return correct(score, score(prompts), template, method)


def fit_label_bias(
    scores: torch.Tensor, gold: torch.Tensor, l2: float = 1e-3, steps: int = 100
) -> torch.Tensor:
    """Per-label offsets b (C,) that maximise the likelihood of ``gold`` under log_softmax(scores) + b, with a
    small L2 pull towards 0: the bias a fine-tuned model keeps, measured on labelled dev examples instead of
    content-free inputs. Written by hand (a bias-only case of vector scaling; C numbers, LBFGS)."""
    log_probs = torch.log_softmax(scores.float().detach(), dim=-1)
    bias = torch.zeros(log_probs.shape[-1], requires_grad=True)
    optimizer = torch.optim.LBFGS([bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(log_probs + bias, gold) + l2 * (bias**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return (bias - bias.mean()).detach()  # only differences between labels matter
