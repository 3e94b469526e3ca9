"""Entity-level precision/recall/F1 per type with seqeval, in its default (conlleval) and strict modes, plus
token (word) accuracy."""

from __future__ import annotations

import warnings

from taskfit.data.ner import convert_tags

STRICT_SCHEMES = {"bio": "IOB2", "iobes": "IOBES"}


def ner_metrics(gold: list[list[str]], predicted: list[list[str]], scheme: str = "bio") -> dict:
    """``gold`` and ``predicted`` are word-level tags in ``scheme``.

    Default mode counts an entity as conlleval does (an I- after O starts one); strict mode (seqeval
    ``mode="strict"``) only counts entities that are well formed in the scheme. IO has no strict form: its
    tags are read as BIO for it (so strict equals default there)."""
    from seqeval import scheme as schemes
    from seqeval.metrics import accuracy_score, classification_report

    if scheme == "io":
        gold = [convert_tags(t, "bio") for t in gold]
        predicted = [convert_tags(t, "bio") for t in predicted]
    strict_scheme = getattr(schemes, STRICT_SCHEMES.get(scheme, "IOB2"))
    with warnings.catch_warnings():  # seqeval warns when a type has no gold entity; its score is 0 then
        warnings.simplefilter("ignore")
        default = classification_report(gold, predicted, output_dict=True, zero_division=0)
        strict = classification_report(
            gold, predicted, output_dict=True, zero_division=0, mode="strict", scheme=strict_scheme
        )
    micro, strict_micro = default["micro avg"], strict["micro avg"]
    types = sorted(k for k in default if not k.endswith(" avg"))
    return {
        "f1": micro["f1-score"],
        "precision": micro["precision"],
        "recall": micro["recall"],
        "strict_f1": strict_micro["f1-score"],
        "strict_precision": strict_micro["precision"],
        "strict_recall": strict_micro["recall"],
        "macro_f1": default["macro avg"]["f1-score"],
        "token_accuracy": accuracy_score(gold, predicted) if gold else 0.0,
        "per_type": {
            t: {
                "precision": default[t]["precision"],
                "recall": default[t]["recall"],
                "f1": default[t]["f1-score"],
                "support": int(default[t]["support"]),
                "strict_f1": strict.get(t, {}).get("f1-score", 0.0),
            }
            for t in types
        },
        **{f"f1_{t}": default[t]["f1-score"] for t in types},  # flat, for leaderboard columns
        "entities_gold": int(micro["support"]),
    }
