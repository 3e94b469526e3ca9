"""task: generation. A causal LM writes the target text; K counts training pairs in all."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from taskfit.errors import TaskfitError
from taskfit.tasks.base import Task

COLUMNS = {
    "chrf": "chrF",
    "rougeL": "ROUGE-L",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "bleu": "BLEU",
    "exact_match": "exact match",
    "perplexity": "perplexity",
}


class Generation(Task):
    name = "generation"
    k_unit = "training pairs"
    per_class = False
    generates = True
    exporter = "causal-lm"

    def load_pools(self, cfg):
        from taskfit.data.prepare import load_pair_pools

        pools = load_pair_pools(cfg)
        pools.task = self.name
        return pools

    def metric(self, key: str | None = None, labels: Sequence[str] = ()):
        from taskfit.evaluation.ranking import Metric, ranked_by

        if key is None or key == "chrf":
            return Metric(
                "chrf", "chrF", "rougeL", "ROUGE-L", False, (("bleu", "BLEU"), ("perplexity", "perplexity")),
                k_unit=self.k_unit,
            )  # fmt: skip
        order = ["chrf", "rougeL", "bleu", "perplexity"]
        return ranked_by(key, COLUMNS, order, lower_is_better=key == "perplexity", k_unit=self.k_unit)

    def evaluate(self, strategy, splits, data) -> tuple[dict, list[dict]]:
        """BLEU/chrF/ROUGE/exact match of the generated texts, target perplexity, decoding speed."""
        from taskfit.evaluation.generation_metrics import generation_metrics

        test = splits.test
        generated = strategy.predict(test)
        metrics = generation_metrics([e.target for e in test], generated.texts)
        fit = strategy.perplexity(test)
        metrics.update(
            {
                "perplexity": fit["perplexity"],
                "target_loss": fit["loss"],
                "target_tokens": fit["target_tokens"],
                "generated_tokens": generated.new_tokens,
                "generate_tokens_per_s": generated.new_tokens / max(generated.seconds, 1e-9),
            }
        )
        rows = [{"input": e.text, "target": e.target, "generated": g} for e, g in zip(test, generated.texts)]
        return metrics, rows

    def dev_score(self, strategy, dev: list) -> tuple[str, float]:
        # minus the dev target loss: one forward pass; decoding every dev input per trial would cost far more
        return "dev_neg_loss", -strategy.perplexity(dev)["loss"]

    def headline(self, metrics: dict) -> str:
        return (
            f"chrF {metrics['chrf']:.1f}, ROUGE-L {metrics['rougeL']:.1f}, BLEU {metrics['bleu']:.1f}, "
            f"perplexity {metrics['perplexity']:.2f}"
        )

    def report_notes(self) -> list[str]:
        return [
            "chrF, ROUGE-L and BLEU on a 0-100 scale (sacrebleu, rouge-score; Chinese by characters); "
            "perplexity of the reference targets (lower is better); the zero-shot row is the untouched model"
        ]

    def report_samples(self, out: Path, groups: list) -> list[dict]:
        return generation_samples(out, groups)

    def recommendation_notes(self, groups: list) -> list[str]:
        return before_after(groups)

    def check_prompt(self, prompt, labels, causal_lm: bool) -> None:
        from taskfit.prompts import Template

        if prompt is not None:  # optional (the chat template alone works); the target goes in {answer}
            Template.parse(prompt.template)

    def serve(self, strategy, examples: list) -> list[dict]:
        return [{"generated": t} for t in strategy.predict(examples).texts]

    def check_export(self, name: str, form, onnx: bool, serve: str) -> None:
        if onnx:
            raise TaskfitError(
                "onnx export covers encoder classifiers; a causal LM is served through a decoding loop with a "
                "key/value cache, which a plain forward graph lacks. Export the merged folder (without onnx) "
                "and convert it with a tool built for decoders (e.g. optimum-cli export onnx)"
            )


def generation_samples(out: Path, groups: list, count: int = 5) -> list[dict]:
    """The first ``count`` test inputs with every row's output (first seed, largest K): before vs after."""
    from taskfit.evaluation.ranking import shots_order

    outputs: dict[str, dict[str, str]] = {}
    targets: dict[str, str] = {}
    ref = max((g.shots for g in groups if g.ok and g.shots != "0"), key=shots_order, default="0")
    for g in groups:
        if not g.ok or g.shots not in (ref, "0"):
            continue
        path = out / g.ok[0]["cell"] / "predictions.jsonl"
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines()[:count]:
            row = json.loads(line)
            targets[row["input"]] = row["target"]
            outputs.setdefault(row["input"], {})[g.name] = row["generated"]
    return [{"input": i, "target": targets[i], "outputs": o} for i, o in outputs.items()]


def before_after(groups: list) -> list[str]:
    """The untouched model (zero-shot) beside the best tuned row on the same backbone."""
    lines = []
    for before in (g for g in groups if g.ok and g.strategy == "zero-shot" and g.shots == "0"):
        tuned = [g for g in groups if g.ok and g.backbone == before.backbone and g.shots != "0"]
        if not tuned:
            continue
        after = max(tuned, key=lambda g: g.rank)

        def scores(g) -> str:
            return f"chrF {g.mean('chrf'):.1f}, ROUGE-L {g.mean('rougeL'):.1f}, perplexity {g.mean('perplexity'):.2f}"

        lines.append(
            f"- **Before vs after** ({before.backbone}): untouched {scores(before)} -> best tuned by "
            f"{after.metric.label}, {after.name} at K={after.shots}: {scores(after)}."
        )
    return lines


GENERATION = Generation()
