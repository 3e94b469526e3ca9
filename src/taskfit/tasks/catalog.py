"""The tasks taskfit knows, listed once: each name, where its task object lives, and the metrics a grid can
rank it by (the first is the default). The config's ``task:`` and ``metric:`` checks, the registry and
``get_task`` all read this table; a new task is a row here plus its task module. Imports nothing, so the
config package (the bottom layer) can read it."""

from __future__ import annotations

# task name -> ("module:attribute" of its task object, the metric keys ``metric:`` accepts)
CATALOG: dict[str, tuple[str, tuple[str, ...]]] = {
    "classification": ("taskfit.tasks.classification:CLASSIFICATION", ("accuracy", "macro_f1")),
    "generation": (
        "taskfit.tasks.generation:GENERATION",
        ("chrf", "rougeL", "rouge1", "rouge2", "bleu", "exact_match", "perplexity"),
    ),
    "ner": ("taskfit.tasks.ner:NER", ("f1", "precision", "recall", "strict_f1", "token_accuracy")),
    "relation": ("taskfit.tasks.span:RELATION", ("micro_f1", "macro_f1", "accuracy")),
    "extractive-qa": ("taskfit.tasks.span:EXTRACTIVE_QA", ("f1", "exact_match")),
}
TASK_NAMES: tuple[str, ...] = tuple(CATALOG)
TASK_METRICS: dict[str, tuple[str, ...]] = {name: metrics for name, (_, metrics) in CATALOG.items()}
