"""Verbalizers: each label maps to one or more words scored at the answer slot (multi-token words allowed)."""

from __future__ import annotations

from dataclasses import dataclass

from taskfit.errors import TaskfitError, did_you_mean


@dataclass(frozen=True)
class Verbalizer:
    labels: tuple[str, ...]
    words: tuple[str, ...]  # flat list of all words
    word_labels: tuple[int, ...]  # label index of each word

    @classmethod
    def build(cls, mapping: dict[str, list[str]], labels: list[str]) -> Verbalizer:
        for key in mapping:
            if key not in labels:
                raise TaskfitError(
                    f"prompt.verbalizer has label '{key}', which is not in the data (labels: {', '.join(labels)})."
                    + did_you_mean(key, labels)
                )
        words: list[str] = []
        word_labels: list[int] = []
        for i, label in enumerate(labels):
            ws = [w for w in mapping.get(label, []) if w]
            if not ws:
                raise TaskfitError(
                    f"label '{label}' has no verbalizer word. Add one under prompt.verbalizer, e.g.\n"
                    f'  verbalizer:\n    {label}: [" {label.lower()}"]'
                )
            words.extend(ws)
            word_labels.extend([i] * len(ws))
        return cls(tuple(labels), tuple(words), tuple(word_labels))

    def first_word(self, label: str) -> str:
        return self.words[self.word_labels.index(self.labels.index(label))]
