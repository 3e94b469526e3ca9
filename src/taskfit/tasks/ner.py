"""task: ner. One tag per word; entities scored with seqeval; K counts training sentences in all."""

from __future__ import annotations

from collections.abc import Sequence

from taskfit.tasks.base import Task

COLUMNS = {
    "f1": "entity F1",
    "strict_f1": "strict F1",
    "precision": "precision",
    "recall": "recall",
    "token_accuracy": "token acc.",
}


class Ner(Task):
    name = "ner"
    exporter = None  # check_export says why, and what works instead
    k_unit = "training sentences"
    per_class = False  # a sentence holds entities of several types: K sentences in all
    tags_words = True

    def check_export(self, name: str, form, onnx: bool, serve: str) -> None:
        from taskfit.errors import TaskfitError

        raise TaskfitError(
            "export covers generation fine-tunes and encoder classifiers, not ner runs: a tagger predicts a "
            "tag per word from its first sub-token's state and merges the overlapping windows of a long "
            f"sentence, which no plain transformers class does; {serve}"
        )

    def load_pools(self, cfg):
        from taskfit.data.prepare import load_ner_pools

        return load_ner_pools(cfg)

    def metric(self, key: str | None = None, labels: Sequence[str] = ()):
        """Entity F1 (seqeval) first, then the other figures and the F1 of every entity type (``labels``)."""
        from taskfit.evaluation.ranking import ranked_by

        per_type = tuple((f"f1_{t}", f"F1 {t}") for t in labels)
        return ranked_by(
            key or "f1",
            COLUMNS,
            list(COLUMNS),
            per_type,
            unit_interval=True,
            dev_key="dev_f1",
            k_unit=self.k_unit,
        )

    def evaluate(self, strategy, splits, data) -> tuple[dict, list[dict]]:
        """seqeval entity P/R/F1 (overall, per type, strict), token accuracy; the predicted entities per
        sentence with character offsets; for prompted strategies, how much of the LM's output could not be
        read; for taggers, how words were aligned to tokens."""
        from taskfit.data.ner import convert_tags, entities_of
        from taskfit.evaluation.ner_metrics import ner_metrics
        from taskfit.strategies.base import CountsParsing, ReportsAlignment

        test = splits.test
        scheme = getattr(strategy.config, "scheme", None) or strategy.scheme
        predicted = strategy.predict(test)
        gold = [convert_tags(e.tags, scheme) for e in test]
        metrics = ner_metrics(gold, [p["tags"] for p in predicted], scheme)
        metrics["n"] = len(test)
        if isinstance(strategy, CountsParsing):  # generative: unparseable lines/answers, texts not found
            metrics["parsing"] = dict(strategy.counts)
        if isinstance(strategy, ReportsAlignment):  # taggers: windows, sentences split, words sharing a token
            metrics["alignment"] = dict(strategy.stats)
        rows = []
        for e, p in zip(test, predicted):
            row = {
                "text": e.text,
                "gold": [g.as_dict() for g in entities_of(e, e.tags)],
                "predicted": [x.as_dict() for x in p["entities"]],
            }
            if "answer" in p:
                row["answer"] = p["answer"]
            rows.append(row)
        return metrics, rows

    def headline(self, metrics: dict) -> str:
        return (
            f"entity F1 {metrics['f1']:.3f} (strict {metrics['strict_f1']:.3f}), "
            f"token acc. {metrics['token_accuracy']:.3f}"
        )

    def report_notes(self) -> list[str]:
        return [
            "entity-level F1 with seqeval (default mode: conlleval's; strict F1: only well-formed entities in "
            "the scheme); token acc.: share of words with the gold tag; F1 <type>: per entity type; K = "
            "training sentences in all"
        ]

    def check_prompt(self, prompt, labels, causal_lm: bool) -> None:
        """NER prompts are built in (strategies/ner_prompting.py): nothing to check."""

    def serve(self, strategy, examples: list) -> list[dict]:
        # entities with character offsets into each input text
        return [{"entities": [e.as_dict() for e in p["entities"]]} for p in strategy.predict(examples)]

    def inspect_files(self, train: str, dev: str | None, test: str | None):
        from taskfit.data.inspect import inspect_ner

        return inspect_ner(train, dev, test)


NER = Ner()
