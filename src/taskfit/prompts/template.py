"""Prompt templates: ``"Review: {text}\\nSentiment:{answer}"``.

Fields: ``{text}``, ``{text_pair}``, and exactly one ``{answer}`` slot where label words are scored.
``{{`` and ``}}`` are literal braces. Parsed with ``string.Formatter`` (the standard library does the
lexing; we only check the fields).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from taskfit.data.readers import Example
from taskfit.errors import TaskfitError, did_you_mean

FIELDS = ("text", "text_pair", "answer")


@dataclass(frozen=True)
class Template:
    source: str
    before_answer: str  # format string up to the answer slot
    after_answer: str  # format string after it (used when a demonstration shows its answer)

    @classmethod
    def parse(cls, source: str) -> Template:
        answers = 0
        for _, field, spec, conv in string.Formatter().parse(source):
            if field is None:
                continue
            if field not in FIELDS:
                raise TaskfitError(
                    f"template {source!r}: unknown field '{{{field}}}'; fields: "
                    + ", ".join("{" + f + "}" for f in FIELDS)
                    + "."
                    + did_you_mean(field, FIELDS)
                )
            if spec or conv:
                raise TaskfitError(
                    f"template {source!r}: field '{{{field}}}' takes no format spec or conversion"
                )
            answers += field == "answer"
        if answers != 1:
            raise TaskfitError(
                f"template {source!r} must contain exactly one {{answer}} slot (found {answers}), "
                'e.g. "Review: {text}\\nSentiment:{answer}"'
            )
        if "{text}" not in source:
            raise TaskfitError(
                f"template {source!r} has no {{text}} field, so the input would never be shown"
            )
        before, _, after = source.partition("{answer}")
        return cls(source, before, after)

    def _fill(self, fmt: str, example: Example) -> str:
        if "{text_pair}" in fmt and example.text_pair is None:
            raise TaskfitError(
                f"{example.source}: the template uses {{text_pair}} but this example has none "
                "(set data.columns.text_pair)"
            )
        return fmt.format(text=example.text, text_pair=example.text_pair or "")

    def prompt(self, example: Example) -> str:
        """Everything before the answer slot: what the LM reads before scoring label words."""
        return self._fill(self.before_answer, example)

    def with_answer(self, example: Example, answer: str) -> str:
        """The whole filled template, e.g. for a demonstration."""
        return self.prompt(example) + answer + self._fill(self.after_answer, example)
