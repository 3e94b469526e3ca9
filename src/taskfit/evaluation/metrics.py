"""Classification metrics through scikit-learn."""

from __future__ import annotations

from collections import Counter

from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(gold: list[str], predicted: list[str], labels: list[str]) -> dict:
    """accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix (rows gold, columns predicted),
    and the majority-class baseline (what always answering the most frequent test label would score)."""
    p, r, f, s = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    majority_label, majority_count = Counter(gold).most_common(1)[0]
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": labels,
            "matrix": confusion_matrix(gold, predicted, labels=labels).tolist(),
        },
        "predicted_distribution": dict(Counter(predicted)),
        "gold_distribution": dict(Counter(gold)),
        "majority_baseline": {
            "label": majority_label,
            "accuracy": majority_count / len(gold),
            # the same always-one-label predictor on the other yardstick (ranked by when labels are imbalanced)
            "macro_f1": float(
                f1_score(gold, [majority_label] * len(gold), labels=labels, average="macro", zero_division=0)
            ),
        },
        "n": len(gold),
    }
