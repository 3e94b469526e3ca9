"""Progress reporting: a tqdm bar on a terminal, plain periodic lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def make_progress(stream=None, min_interval: float = 10.0) -> Callable[[str, int], Callable[[int], None]]:
    """Returns ``start(desc, total) -> advance(n)``."""
    stream = stream or sys.stderr

    def start(desc: str, total: int) -> Callable[[int], None]:
        if stream.isatty():
            from tqdm import tqdm

            bar = tqdm(total=total, desc=desc, file=stream, leave=False, dynamic_ncols=True)

            def advance_bar(n: int) -> None:
                bar.update(n)
                if bar.n >= total:
                    bar.close()

            return advance_bar
        state = {"done": 0, "last": time.perf_counter(), "t0": time.perf_counter()}

        def advance_lines(n: int) -> None:
            state["done"] += n
            now = time.perf_counter()
            if now - state["last"] >= min_interval or state["done"] >= total:
                state["last"] = now
                rate = state["done"] / max(now - state["t0"], 1e-9)
                print(
                    f"  {desc}: {state['done']}/{total} ({100 * state['done'] / max(total, 1):.0f}%, {rate:.1f}/s)",
                    file=stream,
                    flush=True,
                )

        return advance_lines

    return start
