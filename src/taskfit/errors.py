"""One exception type for every user-facing problem: the CLI prints its message without a traceback."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class TaskfitError(Exception):
    """A problem the user can fix: the message says what, where, and what would be valid."""


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The nearest valid spelling of ``name``, or None when nothing is close."""
    name, candidates = str(name), [str(c) for c in candidates]
    # A shared word ("lr_rate" vs "lr") beats character similarity ("lr_rate" vs "warmup_ratio").
    words = set(re.split(r"[_\-. ]+", name.lower())) - {""}
    sharing = [c for c in candidates if words & set(re.split(r"[_\-. ]+", c.lower()))]
    pool = sharing or candidates
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.0 if sharing else 0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    hint = closest(name, candidates)
    return f" Did you mean '{hint}'?" if hint else ""
