"""The task objects of the span tasks, relation and extractive-qa (their readers, models and strategies are
in ``tasks/relation.py`` and ``tasks/extractive_qa.py``, imported here only inside methods: those import
torch)."""

from __future__ import annotations

from collections.abc import Sequence

from taskfit.errors import TaskfitError
from taskfit.tasks.base import Task
from taskfit.tasks.classification import label_metric, label_scores


def _no_export(task: str, head: str, serve: str) -> TaskfitError:
    return TaskfitError(
        f"export covers generation fine-tunes and encoder classifiers, not {task} runs: {head} has no plain "
        f"transformers class to export to; {serve}"
    )


class Relation(Task):
    """A label for the relation between two marked entities of a sentence."""

    name = "relation"
    exporter = None  # check_export says why, and what works instead

    def load_pools(self, cfg):
        from taskfit.tasks.relation import load_relation_pools

        pools = load_relation_pools(cfg)
        pools.task = self.name
        return pools

    def metric(self, key: str | None = None, labels: Sequence[str] = ()):
        from taskfit.evaluation.ranking import Metric

        # F1 over the relation labels, the no-relation label left out (data.no_relation_label)
        default = Metric("micro_f1", "micro-F1", "macro_f1", "macro-F1", True, (("accuracy", "accuracy"),))
        return label_metric(key, default)

    def evaluate(self, strategy, splits, data) -> tuple[dict, list[dict]]:
        from taskfit.tasks.relation import evaluate_relation

        return evaluate_relation(strategy, splits.test, splits.labels, data.no_relation_label)

    def dev_score(self, strategy, dev: list) -> tuple[str, float]:
        return strategy.dev_metric, strategy.dev_score(dev)  # the strategy's own early-stopping score

    def headline(self, metrics: dict) -> str:
        return (
            f"micro-F1 {metrics['micro_f1']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
            f"accuracy {metrics['accuracy']:.3f}"
        )

    def serve(self, strategy, examples: list) -> list[dict]:
        return label_scores(strategy, examples)  # text: the sentence with [E1]..[/E1] and [E2]..[/E2]

    def check_export(self, name: str, form, onnx: bool, serve: str) -> None:
        head = "their head reads the states of entity markers inserted around the two entities"
        raise _no_export(self.name, head, serve)


class ExtractiveQA(Task):
    """The answer to a question as a span of its context; SQuAD scores."""

    name = "extractive-qa"
    exporter = None  # check_export says why, and what works instead
    k_unit = "questions in all"
    per_class = False

    def load_pools(self, cfg):
        from taskfit.tasks.extractive_qa import load_qa_pools

        pools = load_qa_pools(cfg)
        pools.task = self.name
        return pools

    def metric(self, key: str | None = None, labels: Sequence[str] = ()):
        from taskfit.evaluation.ranking import Metric

        if key is None or key == "f1":  # SQuAD scores, 0-100
            return Metric("f1", "F1", "exact_match", "EM", False, k_unit=self.k_unit)
        return Metric("exact_match", "EM", "f1", "F1", False, k_unit=self.k_unit)

    def evaluate(self, strategy, splits, data) -> tuple[dict, list[dict]]:
        from taskfit.tasks.extractive_qa import evaluate_qa

        return evaluate_qa(strategy, splits.test)

    def dev_score(self, strategy, dev: list) -> tuple[str, float]:
        return strategy.dev_metric, strategy.dev_score(dev)  # the strategy's own early-stopping score

    def headline(self, metrics: dict) -> str:
        return f"F1 {metrics['f1']:.1f}, EM {metrics['exact_match']:.1f}"

    def serve(self, strategy, examples: list) -> list[dict]:
        # text: the question, text_pair: the context
        return [
            {"answer": a.text, "start": a.start, "end": a.end, "score": a.score}
            for a in strategy.predict(examples)
        ]

    def check_export(self, name: str, form, onnx: bool, serve: str) -> None:
        head = "their start/end span head, with post-processing over overlapping context windows,"
        raise _no_export(self.name, head, serve)


RELATION = Relation()
EXTRACTIVE_QA = ExtractiveQA()
