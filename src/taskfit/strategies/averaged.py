"""Several saved label models behind one: their label scores averaged with equal weights (``final/`` when the
grid cannot tell its top rows apart; ``compare.final``).

Equal weights need no labels to fit them (the same labels chose the members, as they chose the single row
the grid would otherwise refit). The label is the top of the averaged
scores; ``probabilities`` average the members' calibrated ones when every member has them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from taskfit.strategies.base import STRATEGY_FILE, Predictions

MEMBERS_DIR = "members"
ENSEMBLE_NAME = "ensemble"


class Averaged:
    def __init__(self, members: list, names: list[str], labels: list[str]) -> None:
        self.members, self.names, self.labels = members, names, list(labels)
        self.log: list[dict] = []
        self.config = members[0].config  # what callers read of "the" config: the recommended member's

    def predict(self, examples: list) -> Predictions:
        outputs = [m.predict(examples) for m in self.members]
        scores = sum(_aligned(p.probs, p.label_names, self.labels) for p in outputs) / len(outputs)
        calibrated = [p.probabilities for p in outputs]
        probabilities = None
        if all(c is not None for c in calibrated):
            probabilities = sum(
                _aligned(c, p.label_names, self.labels) for c, p in zip(calibrated, outputs)
            ) / len(outputs)
        labels = [self.labels[i] for i in scores.argmax(-1).tolist()]
        return Predictions(labels, scores, list(self.labels), probabilities=probabilities)

    def trainable_parameters(self) -> tuple[int, int]:
        counts = [m.trainable_parameters() for m in self.members]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def save(self, directory: Path) -> None:
        from taskfit.io import write_json_atomic

        directory = Path(directory)
        folders = []
        for i, member in enumerate(self.members):
            folder = f"{MEMBERS_DIR}/{i}"
            member.save(directory / folder)
            folders.append(folder)
        first = json.loads((directory / folders[0] / STRATEGY_FILE).read_text(encoding="utf-8"))
        write_json_atomic(
            directory / STRATEGY_FILE,
            {
                "task": first.get("task", "classification"),
                "strategy": {"name": ENSEMBLE_NAME, "id": " + ".join(self.names)},
                "labels": self.labels,
                "members": folders,
                "member_names": self.names,
                "mixed_precision": first.get("mixed_precision", "no"),
            },
        )


def _aligned(probs: torch.Tensor, names: list[str], labels: list[str]) -> torch.Tensor:
    """A member's (N, C) scores in ``labels`` order."""
    return probs.float()[:, [list(names).index(label) for label in labels]]


def load_averaged(directory: Path, saved: dict, load_member) -> Averaged:
    """Rebuild what ``Averaged.save`` wrote; ``load_member(folder)`` loads one saved member."""
    members = [load_member(Path(directory) / folder) for folder in saved["members"]]
    return Averaged(members, list(saved.get("member_names") or saved["members"]), saved["labels"])
