"""task: classification (the default). One label per text (or text pair); K counts examples per label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskfit.tasks.base import Task


def label_metric(key: str, default) -> Any:
    """A label task's ranking metric: the default one, or another share of test examples by its key."""
    from taskfit.evaluation.ranking import Metric

    if key is None or key == default.key:
        return default
    labels = {"macro_f1": "macro-F1", "micro_f1": "micro-F1"}
    second = "accuracy" if key != "accuracy" else "macro_f1"
    return Metric(key, labels.get(key, key.replace("_", "-")), second, labels.get(second, second), True)


def label_rows(test: list, preds: Any, text=lambda e: e.text) -> list[dict]:
    """predictions.jsonl rows of a label task: text, gold, predicted, the probability of every label."""
    return [
        {
            "text": text(e),
            "gold": e.label,
            "predicted": p,
            "probs": dict(zip(preds.label_names, map(float, pr))),
        }
        for e, p, pr in zip(test, preds.labels, preds.probs.tolist())
    ]


def label_scores(strategy: Any, examples: list) -> list[dict]:
    """Served label predictions: the label and the score of every label (the label is the top score), and,
    when a decision correction calibrated them (``strategies.corrected``), ``probabilities``: every label's
    probability at the data's label shares, the numbers to put a threshold on."""
    preds = strategy.predict(examples)
    names = preds.label_names
    calibrated = preds.probabilities.tolist() if preds.probabilities is not None else [None] * len(examples)
    return [
        {
            "label": label,
            "scores": dict(zip(names, map(float, probs))),
            **({"probabilities": dict(zip(names, map(float, shares)))} if shares is not None else {}),
        }
        for label, probs, shares in zip(preds.labels, preds.probs.tolist(), calibrated)
    ]


def selection_scores(gold: list[str], predicted: list[str], labels: Sequence[str]) -> dict:
    """The ``dev_*`` scores a label row is selected by, with the majority-class floor on the same examples."""
    from taskfit.evaluation.metrics import classification_metrics

    m = classification_metrics(gold, list(predicted), list(labels))
    majority = m["majority_baseline"]
    return {
        "dev_accuracy": m["accuracy"],
        "dev_macro_f1": m["macro_f1"],
        "dev_majority": {"accuracy": majority["accuracy"], "macro_f1": majority["macro_f1"]},
        "dev_examples_scored": len(gold),
    }


class Classification(Task):
    name = "classification"
    describes_labels = True
    in_cell_key = False
    fits_final = True
    corrects_decisions = True

    def load_pools(self, cfg):
        from taskfit.data.prepare import load_classification_pools

        return load_classification_pools(cfg)

    def metric(self, key: str | None = None, labels: Sequence[str] = ()):
        from taskfit.evaluation.ranking import Metric

        return label_metric(key, Metric("accuracy", "accuracy", "macro_f1", "macro-F1", True))

    def evaluate(self, strategy, splits, data) -> tuple[dict, list[dict]]:
        from taskfit.evaluation.metrics import classification_metrics

        test = splits.test
        if not test:  # true few-shot (data.selection: auto, a small file): the folds are the only estimate
            return {}, []
        preds = strategy.predict(test)
        metrics = classification_metrics([e.label for e in test], preds.labels, splits.labels)
        from taskfit.strategies.base import Diagnoses

        # the model under a decision correction (runtime protocols read attributes statically from 3.12)
        if isinstance(
            getattr(strategy, "inner", strategy), Diagnoses
        ):  # e.g. in-context: share of predictions = last demo's label
            metrics["diagnostics"] = strategy.diagnostics(preds.labels, [e.label for e in test])
        return metrics, label_rows(test, preds)

    def selection_metrics(self, strategy, dev: list, labels: Sequence[str]) -> dict:
        return self.selection_with_rows(strategy, dev, labels)[0]

    def selection_with_rows(self, strategy, dev: list, labels: Sequence[str]) -> tuple[dict, list[dict]]:
        if not dev:
            return {}, []
        preds = strategy.predict(dev)  # once: the scores and the saved rows come from the same predictions
        return selection_scores([e.label for e in dev], preds.labels, labels), label_rows(dev, preds)

    def serve(self, strategy, examples: list) -> list[dict]:
        return label_scores(strategy, examples)


CLASSIFICATION = Classification()
