"""What differs by task, behind one small interface: a ``Task`` object per task (``taskfit.tasks.get_task``).

A task owns its data pools, its metrics and the unit of K, how a fitted strategy is scored on test and on dev
(search), its report notes, its prompt checks, what a served model returns and how a run is exported. Code
outside ``taskfit/tasks`` asks the task object instead of comparing task names.

Defaults here are classification's behaviour where one task's is the natural default (a label per example);
each task module overrides what differs. Task objects import torch-heavy code inside their methods only, so
that ``get_task`` (and ``taskfit validate``) never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from taskfit.errors import TaskfitError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from taskfit.compare.summary import Group, Metric
    from taskfit.config import DataConfig, PromptConfig
    from taskfit.data.prepare import Pools, Splits


class Task:
    """One task's behaviour. Subclasses set the class attributes and override the methods that differ."""

    name: ClassVar[str]
    k_unit: ClassVar[str] = "per class"  # what K counts: "K=16 per class", "K=64 training pairs", ...
    per_class: ClassVar[bool] = True  # K examples of every label (else K examples in all, seeded)
    generates: ClassVar[bool] = False  # a served run writes text (completions, chat endpoints)
    tags_words: ClassVar[bool] = False
    # encoder zero-shot embeds a description of each label: missing ones are derived from the label names
    describes_labels: ClassVar[bool] = (
        False  # one tag per word: the taggers window long sentences, not truncate
    )
    # Whether cell keys name the task: classification keys predate tasks, so they leave it out (and keep
    # the keys of existing run folders).
    in_cell_key: ClassVar[bool] = True
    # how `taskfit export` writes a run: "classifier" (an encoder/LM classifier with its head), "causal-lm"
    # (a generation fine-tune), None (check_export refuses first)
    exporter: ClassVar[str | None] = "classifier"
    # whether `taskfit compare` refits the chosen row on every label into runs/NAME/final (its rows are ranked
    # on dev scores: ``selection_metrics``)
    fits_final: ClassVar[bool] = False
    # whether a cell chooses a decision correction on its held-out label probabilities (compare.correction)
    corrects_decisions: ClassVar[bool] = False

    # -- data --------------------------------------------------------------------------------------------

    def load_pools(self, cfg: DataConfig) -> Pools:
        """All examples of the data config before k-shot sampling."""
        raise NotImplementedError

    # -- metrics -----------------------------------------------------------------------------------------

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """The values ``metric:`` accepts for this task (the first is the default ranking)."""
        from taskfit.tasks.catalog import TASK_METRICS

        return TASK_METRICS[self.name]

    def metric(self, key: str | None = None, labels: Sequence[str] = ()) -> Metric:
        """What the leaderboard ranks by; ``key`` picks another of ``metric_keys``; ``labels``: the pools'."""
        raise NotImplementedError

    def evaluate(self, strategy: Any, splits: Splits, data: DataConfig) -> tuple[dict, list[dict]]:
        """A fitted strategy on the test split: (metrics, predictions.jsonl rows)."""
        raise NotImplementedError

    def dev_score(self, strategy: Any, dev: list) -> tuple[str, float]:
        """(name, value) a search trial is judged on; higher is better."""
        from taskfit.training.loop import accuracy

        return "dev_accuracy", accuracy(strategy.predict(dev).labels, dev)

    def selection_metrics(self, strategy: Any, dev: list, labels: Sequence[str]) -> dict:
        """A fitted strategy's scores on dev (``dev_<metric key>``), what a grid ranks its rows by so that
        test is never used to choose; empty when this task records none (its rows are then ranked on test)."""
        return {}

    def selection_with_rows(self, strategy: Any, dev: list, labels: Sequence[str]) -> tuple[dict, list[dict]]:
        """``selection_metrics`` and the dev predictions as rows like predictions.jsonl's (saved as
        dev_predictions.jsonl for the ensembles' weights; empty where a task keeps none)."""
        return self.selection_metrics(strategy, dev, labels), []

    def headline(self, metrics: dict) -> str:
        """A finished cell's main scores in one console line."""
        if "accuracy" not in metrics:  # no test split (true few-shot): the selection score is the estimate
            where = "cross-validated" if "cv" in metrics else "on every label"
            return f"{where} accuracy {metrics['dev_accuracy']:.3f}, macro-F1 {metrics['dev_macro_f1']:.3f}"
        return f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"

    # -- report ------------------------------------------------------------------------------------------

    def report_notes(self) -> list[str]:
        """Lines for the report's notes that explain this task's figures."""
        return []

    def report_samples(self, out: Path, groups: list[Group]) -> list[dict] | None:
        """Example outputs shown in the report (generation: before vs after), or None."""
        return None

    def recommendation_notes(self, groups: list[Group]) -> list[str]:
        """Lines added to the recommendation."""
        return []

    # -- prompts -----------------------------------------------------------------------------------------

    def check_prompt(self, prompt: PromptConfig | None, labels: Sequence[str], causal_lm: bool) -> None:
        """Refuse a missing or unusable prompt before anything trains; ``causal_lm``: some strategy of the
        grid runs on a causal LM (those score or write through the prompt)."""
        if not causal_lm:
            return
        from taskfit.prompts import Template, Verbalizer

        if prompt is None:
            raise TaskfitError("causal-LM strategies need a 'prompt:' block with a template and a verbalizer")
        Template.parse(prompt.template)
        Verbalizer.build(prompt.verbalizer, list(labels))

    # -- serving -----------------------------------------------------------------------------------------

    def serve(self, strategy: Any, examples: list) -> list[dict]:
        """One result dict per input example (``taskfit predict``, ``/v1/predict``)."""
        raise NotImplementedError

    # -- export ------------------------------------------------------------------------------------------

    def check_export(self, name: str, form: str | None, onnx: bool, serve: str) -> None:
        """Refuse, before anything loads, what this task's runs cannot be exported as; ``serve``: the
        alternative to suggest."""

    # -- inspect -----------------------------------------------------------------------------------------

    def inspect_files(self, train: str, dev: str | None, test: str | None) -> Any:
        """``taskfit inspect --task``: a report on raw files in this task's own format, or None for the
        generic checks."""
        return None

    def __repr__(self) -> str:
        return f"<task {self.name}>"
