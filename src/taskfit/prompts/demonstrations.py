"""Choosing in-context demonstrations: ``random``, ``balanced`` (K per class) or ``similar`` (kNN)."""

from __future__ import annotations

import random

import torch

from taskfit.data.readers import Example


def render_demonstrations(template, verbalizer, demos: list[Example], separator: str = "\n\n") -> str:
    """Each demonstration filled in with its label's first verbalizer word, each followed by ``separator``."""
    return "".join(template.with_answer(d, verbalizer.first_word(d.label)) + separator for d in demos)


def select_fixed(
    pool: list[Example], per_class: int, labels: list[str], selection: str, seed: int
) -> list[Example]:
    """One demonstration set shared by every query (selection random or balanced)."""
    rng = random.Random(seed)
    n = per_class * len(labels)
    if selection == "random":
        return rng.sample(pool, min(n, len(pool)))
    chosen: list[Example] = []
    for label in labels:
        members = [e for e in pool if e.label == label]
        chosen.extend(rng.sample(members, min(per_class, len(members))))
    rng.shuffle(chosen)
    return chosen


def select_similar(pool_embeddings: torch.Tensor, query_embeddings: torch.Tensor, n: int) -> list[list[int]]:
    """Indices of the ``n`` most similar pool items per query, most similar LAST (nearest the query)."""
    sims = query_embeddings @ pool_embeddings.T  # (Q, P), embeddings are L2-normalised
    top = sims.topk(min(n, pool_embeddings.shape[0]), dim=1).indices  # (Q, n), most similar first
    return [list(reversed(row.tolist())) for row in top]
