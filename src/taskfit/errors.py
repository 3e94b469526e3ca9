"""One exception type for every user-facing problem: the CLI prints its message without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TaskfitError(Exception):
    """A problem the user can fix: the message says what, where, and what would be valid."""


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The nearest valid spelling of ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    hint = closest(name, candidates)
    return f" Did you mean '{hint}'?" if hint else ""
