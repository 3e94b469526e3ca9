"""What a cell costs, from the data (issue 38): the texts' token lengths, how many examples each step trains
on or scores, and the protocol's fits (k folds stopped early, then one fit on all). Used by ``taskfit init``
/ ``compare FILE`` to size a grid to its budget, and by the progress line until cells of a kind have
finished (then their measured times take over).

The constants are seconds on one core with two cells at once (the default on 2 CPU cores), measured on
the packaged backbones (BENCHMARKS.md, issue 38): minilm trains an example of T tokens for one epoch in about
0.004 + 0.0006 T s (T: the tokens its batch is padded to) and predicts it in a third of that; smollm2 scores a prompt of T tokens in 0.05 + 0.003 T s
(about 10 short reviews/s, 0.7 news articles/s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

LOAD = {"minilm": 3.0, "smollm2": 6.0}
EPOCHS_SEEN = 15  # a dev-stopped or fold-stopped curve of 30 epochs ends near here (patience 8 / 5)
EPOCHS_CHOSEN = 8  # and the epoch it keeps


def cjk_share(texts: list[str]) -> float:
    """The share of Han/kana/hangul characters among the letters of ``texts``."""
    letters = [c for t in texts for c in t if c.isalpha()]
    cjk = sum(1 for c in letters if "\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af")
    return cjk / len(letters) if letters else 0.0


def _lengths(texts: list[str]) -> list[float]:
    out = []
    for t in texts:
        cjk = sum(1 for c in t if "\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af")
        rest = "".join(" " if "\u3040" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" else c for c in t)
        out.append(cjk + 1.3 * len(rest.split()) + 2)
    return out


def text_tokens(texts: list[str]) -> float:
    """Mean tokens per text, approximated without a tokenizer: one per Han/kana/hangul character (BERT's
    vocabulary splits them so), 1.3 per word of the rest, plus the special tokens."""
    lengths = _lengths(texts)
    return sum(lengths) / len(lengths) if lengths else 32.0


def padded_tokens(texts: list[str], batch: int = 8) -> float:
    """Tokens a training batch computes per text: every text is padded to its batch's longest, so a few
    long texts cost much more than their share (zh reviews: mean 84, but 95% under 203 and batches padded
    to near that). The mean over batches of the longest of ``batch`` texts drawn in a seeded order."""
    import random

    lengths = _lengths(texts)
    if not lengths:
        return 32.0
    order = lengths[:]
    random.Random(0).shuffle(order)
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    return sum(max(b) for b in batches) / len(batches)


def train_seconds(tokens: float, max_length: int = 256) -> float:
    t = min(tokens, max_length)
    return 0.004 + 0.0006 * t + 1e-6 * t * t  # attention grows with the square: zh's contrastive at ~250


def encode_seconds(tokens: float, max_length: int = 256) -> float:
    return train_seconds(tokens, max_length) / 3


def lm_seconds(tokens: float, max_length: int = 1024) -> float:
    return 0.05 + 0.003 * min(tokens, max_length)


# smollm2's byte-level BPE spends about 1.7 tokens on a Chinese character (1.3 on an English word, as BERT's
# word pieces do), and a label word in Chinese is several tokens, scored label by label (measured on the
# zh-sentiment reviews: 140 smollm2 tokens for 81 characters; "负面" is 5 tokens, " positive" one)
LM_CJK_TOKENS = 1.7


@dataclass
class Workload:
    """What one cell sees: ``train`` examples it learns from (the pool under cross-validation), ``dev``
    examples it is chosen on, ``scored`` examples a row without training data predicts (pool or dev),
    ``test`` examples, ``folds`` (0: no cross-validation), ``tokens`` per text, ``labels``."""

    train: int
    dev: int
    test: int
    tokens: float
    labels: int
    folds: int = 0
    scored: int = 0
    cjk: float = 0.0  # the share of Han/kana/hangul characters (cjk_share): the causal LM reads those dearer
    padded: float | None = None  # tokens a training batch computes per text (padded_tokens); else tokens
    padded_pairs: float | None = None  # the same for contrastive's pair batches (about 24 distinct texts)

    def lm_tokens(self, tokens: float) -> float:
        return tokens * (1 + (LM_CJK_TOKENS - 1) * self.cjk)

    def lm_passes(self) -> float:
        """Forward passes per text to score every label: one for single-token label words (English), one per
        label for the multi-token words of Chinese labels."""
        return 1 + (self.labels - 1) * (self.cjk > 0.3)


def cell_seconds(
    strategy: str, backbone: str, w: Workload, demos_per_class: int = 1, iterations: int = 5
) -> float:
    """Seconds one cell of ``strategy`` on ``backbone`` takes (load, fit, predict)."""
    load = LOAD.get(backbone, 6.0)
    t = w.tokens
    if strategy == "zero-shot":
        per = lm_seconds(w.lm_tokens(t) + 8) * w.lm_passes() if backbone == "smollm2" else encode_seconds(t)
        return load + (w.scored + w.test) * per
    if strategy == "in-context":
        demos = demos_per_class * w.labels
        per = lm_seconds(demos * (w.lm_tokens(t) + 8) + w.lm_tokens(t) + 8) * w.lm_passes()
        held = max(0, w.train - demos) if w.folds else w.dev
        return load + (held + w.test) * per
    step = train_seconds(w.padded or t)
    if strategy == "contrastive":  # a positive and a negative pair per example and iteration: 4 texts
        pair_step = train_seconds(w.padded_pairs or w.padded or t)
        per_fit = lambda n: 4 * iterations * n * pair_step  # noqa: E731
        epochs_cost = per_fit
    else:
        epochs_cost = None
    predict = encode_seconds(w.padded or t)
    if w.folds:
        k, n = w.folds, w.train
        fold_train = n * (k - 1) / k
        if epochs_cost is not None:
            fits = k * epochs_cost(fold_train) + epochs_cost(n)
        else:
            fits = k * EPOCHS_SEEN * (fold_train * step + n / k * predict) + EPOCHS_CHOSEN * n * step
        return load * (k + 1) + fits + w.test * predict
    if epochs_cost is not None:
        return load + epochs_cost(w.train) + (w.dev + w.test) * predict
    return load + EPOCHS_SEEN * (w.train * step + w.dev * predict) + w.test * predict


def grid_prior(config, pools, cells) -> dict[tuple[str, str], float]:
    """The cost model's seconds per (``strategy/backbone``, K label) of a grid's cells, for the progress
    line (``progress.prior_estimate``)."""
    labels = len(pools.labels) or 1
    texts = [e.text for e in [*pools.train, *pools.dev][:1000] if isinstance(getattr(e, "text", None), str)]
    tokens, cjk, padded = text_tokens(texts), cjk_share(texts[:200]), padded_tokens(texts)
    pairs = padded_tokens(texts, 24)
    cv = config.data.selection == "cv"
    pool = len(pools.train) + len(pools.dev)
    test = min(len(pools.test), config.data.test_limit or len(pools.test))
    out = {}
    for c in cells:
        k = c.shots
        train = pool if k is None else k * labels
        if cv:
            w = Workload(
                train, 0, test, tokens, labels, folds=config.data.folds, scored=pool, cjk=cjk, padded=padded
            )
        else:
            dev = len(pools.dev) if k is None else min(len(pools.dev), k * labels)
            w = Workload(
                train,
                dev,
                test,
                tokens,
                labels,
                scored=len(pools.dev),
                cjk=cjk,
                padded=padded,
                padded_pairs=pairs,
            )
        settings = c.strategy.model_dump()
        seconds = cell_seconds(
            c.strategy.name,
            c.strategy.backbone,
            w,
            demos_per_class=settings.get("demos_per_class") or 1,
            iterations=settings.get("num_iterations") or 5,
        )
        out[(f"{c.strategy.run_id}/{c.strategy.backbone}", "all" if k is None else str(k))] = (
            seconds  # plan.shots_label
        )
    return out


# Dropped first when the grid is over budget: the slowest per point of information first.
DROP_ORDER = [
    ("in-context", "smollm2"),
    ("contrastive", "minilm"),
    ("lora", "minilm"),
    ("zero-shot", "smollm2"),
]


def estimate_seconds(
    rows: list[tuple[str, str]], ks: list, seeds: int, w, workers: int | None = None
) -> float:
    """Wall time of a grid on this machine (two cells at once on 2 cores): ``w`` is the
    ``compare.cost.Workload`` of one cell, with ``train`` replaced by K per class for each K of ``ks``
    (None: all of it)."""
    from dataclasses import replace

    total, longest = 0.0, 0.0
    for name, backbone in rows:
        if name == "zero-shot":  # no training data: one cell
            total += cell_seconds(name, backbone, w)
            continue
        for k in ks:
            cell = w if k is None else replace(w, train=k * w.labels, dev=min(w.dev, k * w.labels))
            one = cell_seconds(name, backbone, cell)
            total, longest = total + seeds * one, max(longest, one)
    # two cells at once, but never sooner than its longest cell (zh's contrastive alone took 15 minutes)
    return max(total / min(2, workers or os.cpu_count() or 1), longest)
