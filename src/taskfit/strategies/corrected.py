"""A label strategy with a decision correction (issue 36): the same model, its label probabilities shifted by
per-label offsets that were chosen on held-out predictions (``taskfit.compare.correction``).

Two offset vectors, both added to the model's log-probabilities:
- ``shares``: a prior shift fitted by log loss on held-out predictions, so that ``probabilities`` (what
  ``predict`` and ``serve`` return beside the label) are calibrated to the data's label shares. A model
  trained with balanced class weights otherwise reports probabilities for a world where every label is
  equally common.
- ``decision``: on top of ``shares``, the offsets chosen for the grid's ranking metric (macro-F1 on an
  imbalanced file: the rare label is worth answering more often than its probability says). When it is
  applied, the label is the top of ``shares + decision``, and so are ``Predictions.probs`` (the scores every
  other part of taskfit reads its labels from); when not, the labels are the model's own.

Written here: scikit-learn has no post-hoc multi-class threshold/prior shift for a fixed model
(``TunedThresholdClassifierCV`` is binary and refits the model).
"""

from __future__ import annotations

from pathlib import Path

import torch

from taskfit.strategies.base import STRATEGY_FILE, Predictions

CORRECTION_KEY = "correction"  # strategy.json's key for the offsets


class Corrected:
    """Delegates everything to the wrapped strategy except ``predict`` (shifted) and ``save`` (which adds the
    offsets to strategy.json). Attributes set on it are set on the wrapped strategy, so code that switches a
    strategy's calibration or reads its log keeps working."""

    def __init__(self, inner, correction: dict) -> None:
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "correction", correction)

    def __getattr__(self, name: str):
        return getattr(object.__getattribute__(self, "inner"), name)

    def __setattr__(self, name: str, value) -> None:
        if name in ("inner", "correction"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def predict(self, examples: list) -> Predictions:
        return apply_correction(self.inner.predict(examples), self.correction)

    def save(self, directory: Path) -> None:
        import json

        from taskfit.io import write_json_atomic

        self.inner.save(directory)
        path = Path(directory) / STRATEGY_FILE
        saved = json.loads(path.read_text(encoding="utf-8"))
        saved[CORRECTION_KEY] = saved_part(self.correction)
        write_json_atomic(path, saved)


def corrected_strategy(strategy, record: dict | None):
    """``strategy`` wrapped with the correction ``record`` when it applies anything (else as it is)."""
    if strategy is None or not record or not record.get("applied"):
        return strategy
    if isinstance(strategy, Corrected):
        strategy = strategy.inner
    return Corrected(strategy, record)


def saved_part(correction: dict) -> dict:
    """What a saved model needs of a correction record: the offsets it applies and what they were chosen for."""
    keys = ("temperature", "shares", "decision", "metric", "applied")
    return {k: correction[k] for k in keys if k in correction}


def offsets(correction: dict, key: str, names: list[str]) -> torch.Tensor:
    """One offset vector of a correction in ``names`` order (0 for a label it lacks, or when it has none)."""
    values = correction.get(key) or {}
    return torch.tensor([float(values.get(n, 0.0)) for n in names])


def temperature(correction: dict) -> float:
    """What the model's log-probabilities are divided by (1 when nothing is applied, or none was fitted)."""
    return float(correction.get("temperature") or 1.0) if correction.get("applied") else 1.0


def label_shift(correction: dict, names: list[str]) -> torch.Tensor | None:
    """What the label decision adds to the tempered log-probabilities: ``shares + decision`` (the decision
    offsets were fitted and scored on top of the shares), None when the decision is not applied."""
    if "decision" not in (correction.get("applied") or []):
        return None
    return offsets(correction, "shares", names) + offsets(correction, "decision", names)


def apply_correction(preds: Predictions, correction: dict) -> Predictions:
    """The predictions under a correction: log-probabilities divided by its temperature (which changes no
    label, only how sure ``probs`` are); with the decision applied, the label and ``probs`` from ``shares +
    decision`` on top (as the cell's selection score measured them); with ``shares`` applied,
    ``probabilities`` at the data's label shares. ``shares`` alone changes no label."""
    applied = correction.get("applied") or []
    if not applied:
        return preds
    names = list(preds.label_names)
    tempered = torch.log(preds.probs.float().clamp_min(1e-9)) / temperature(correction)
    shift = label_shift(correction, names)
    scores = torch.softmax(tempered + shift if shift is not None else tempered, dim=-1)
    labels = [names[i] for i in scores.argmax(-1).tolist()] if shift is not None else list(preds.labels)
    probabilities = preds.probabilities
    if "shares" in applied:
        probabilities = torch.softmax(tempered + offsets(correction, "shares", names), dim=-1)
    return Predictions(labels, scores, names, probabilities=probabilities)
