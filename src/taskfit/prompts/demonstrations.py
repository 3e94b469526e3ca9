"""Choosing in-context demonstrations: ``random``, ``balanced`` (K per class, interleaved) or ``similar`` (kNN)."""

from __future__ import annotations

import random

import torch

from taskfit.data.readers import Example


def render_demonstrations(template, verbalizer, demos: list[Example], separator: str = "\n\n") -> str:
    """Each demonstration filled in with its label's first verbalizer word, each followed by ``separator``."""
    return "".join(template.with_answer(d, verbalizer.first_word(d.label)) + separator for d in demos)


def select_fixed(
    pool: list[Example],
    per_class: int,
    labels: list[str],
    selection: str,
    seed: int,
    order: str = "interleaved",
) -> list[Example]:
    """One demonstration set shared by every query (selection random or balanced).

    ``balanced`` takes ``per_class`` of each label; ``order: interleaved`` lays them out in rounds holding one
    of each label (a fresh seeded label order per round, never the same label twice across a round boundary
    when it can be avoided), so no class sits in a block and no label is always last; ``shuffled`` is one
    seeded shuffle, which can put a class in a block."""
    rng = random.Random(seed)
    n = per_class * len(labels)
    if selection == "random":
        return rng.sample(pool, min(n, len(pool)))
    per_label: dict[str, list[Example]] = {}
    for label in labels:
        members = [e for e in pool if e.label == label]
        per_label[label] = rng.sample(members, min(per_class, len(members)))
    if order == "shuffled":
        chosen = [e for label in labels for e in per_label[label]]
        rng.shuffle(chosen)
        return chosen
    return _interleave(per_label, labels, rng)


def _interleave(per_label: dict[str, list[Example]], labels: list[str], rng: random.Random) -> list[Example]:
    chosen: list[Example] = []
    for r in range(max((len(v) for v in per_label.values()), default=0)):
        present = [lab for lab in labels if r < len(per_label[lab])]
        rng.shuffle(present)
        if chosen and len(present) > 1 and present[0] == chosen[-1].label:
            present.append(present.pop(0))  # no label twice in a row across rounds
        chosen.extend(per_label[lab][r] for lab in present)
    return chosen


def select_similar(pool_embeddings: torch.Tensor, query_embeddings: torch.Tensor, n: int) -> list[list[int]]:
    """Indices of the ``n`` most similar pool items per query, most similar LAST (nearest the query)."""
    sims = query_embeddings @ pool_embeddings.T  # (Q, P), embeddings are L2-normalised
    top = sims.topk(min(n, pool_embeddings.shape[0]), dim=1).indices  # (Q, n), most similar first
    return [list(reversed(row.tolist())) for row in top]
