"""SQuAD v1.1 exact match and token F1, written by hand.

This follows the official evaluation script (``evaluate-v1.1.py`` by Rajpurkar et al., shipped with SQuAD
v1.1: ``normalize_answer``, ``f1_score``, ``exact_match_score``, ``metric_max_over_ground_truths``) line for
line. Hand-written because the ``evaluate`` library downloads its metric code from the Hugging Face hub, which
taskfit cannot assume is reachable. Scores are percentages (0-100) as the official script reports them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    """Bag-of-tokens F1 of the normalised strings (0-1)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def squad_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """``exact_match`` and ``f1`` (0-100): each prediction scored against its best-matching reference answer."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    em = f1 = 0.0
    for prediction, golds in zip(predictions, references):
        em += max(exact_match_score(prediction, g) for g in golds)
        f1 += max(f1_score(prediction, g) for g in golds)
    n = max(len(predictions), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n, "n": len(predictions)}
