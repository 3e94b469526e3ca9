"""Progress reporting: a tqdm bar on a terminal, plain periodic lines otherwise (logs, CI); and the grid's
progress with an estimate of the time left."""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path


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


# -- the grid's progress: elapsed, done/left, an estimate of the time left ----------------------------------

STEP_LINE = re.compile(r"^\s+(?P<desc>.+): (?P<done>\d+)/(?P<total>\d+) \(")


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


K_FIXED = (
    8  # a cell's time ~ (K + K_FIXED): loading and predicting cost about what training on 8 per class does
)


def _scale(k: str) -> float | None:
    return float(k) + K_FIXED if k.isdigit() else None


def _scaled_mean(k: str, times: list[tuple[str, float]]) -> float:
    """Mean of (K', seconds) moved to K by the (K + K_FIXED) rule; unscaled where a K is not a number."""
    target = _scale(k)
    out = [s * (target / _scale(kk)) if target and _scale(kk) else s for kk, s in times]
    return sum(out) / len(out)


def _line_fit(times: list[tuple[str, float]]) -> tuple[float, float] | None:
    """Least-squares seconds = a + b * K over numeric K (None unless two K differ); b is kept >= 0."""
    pts = [(float(kk), s) for kk, s in times if kk.isdigit()]
    if len({k for k, _ in pts}) < 2:
        return None
    mk, ms = sum(k for k, _ in pts) / len(pts), sum(s for _, s in pts) / len(pts)
    b = sum((k - mk) * (s - ms) for k, s in pts) / sum((k - mk) ** 2 for k, _ in pts)
    b = max(b, 0.0)
    return ms - b * mk, b


def prior_estimate(group: str, k: str, finished: list[tuple[str, str, float]], prior: dict) -> float | None:
    """The cost model's seconds for a cell (``compare.cost``, from the data's token lengths and the
    protocol's fits), scaled by how the finished cells it also priced compare with it: right from the start
    of a grid, and truer with every cell that ends."""
    if (group, k) not in prior:
        return None
    priced = [(g, kk, s) for g, kk, s in finished if prior.get((g, kk), 0) > 0]
    alike = [x for x in priced if (x[1] == "0") == (k == "0")]  # trains or not: the model errs alike
    backbone = group.partition("/")[2]
    # only the same backbone's cells that also train (or also don't) correct it: smollm2's in-context cell
    # finishing at 0.3 of its estimate says nothing about how fast minilm fine-tunes
    pool = [x for x in alike if x[0].partition("/")[2] == backbone]
    if pool:
        return prior[(group, k)] * sum(s for _, _, s in pool) / sum(prior[(g, kk)] for g, kk, _ in pool)
    return prior[(group, k)]


def cell_estimate(
    group: str, k: str, finished: list[tuple[str, str, float]], prior: dict | None = None
) -> float | None:
    """Seconds a cell of ``group`` (``strategy/backbone``) at K=``k`` should take, from the finished cells
    (group, K, seconds): the same group at the same K; else the same group's line through its other K (with
    one K: scaled by (K + 8)); else the same backbone's cells that also train (K > 0) or also don't (K = 0),
    scaled; else any such cells; else all cells. (The backbone tier matters: on the default grid a smollm2
    in-context cell takes ~90 s and a minilm one ~30-90 s; estimating minilm's lora from smollm2's cells put
    the time left 43% high after the first third.)"""
    same = [(kk, s) for g, kk, s in finished if g == group]
    exact = [s for kk, s in same if kk == k]
    if exact:
        return sum(exact) / len(exact)
    if prior and (guess := prior_estimate(group, k, finished, prior)) is not None:
        return guess
    if same:
        line = _line_fit(same)
        if line is not None and k.isdigit():
            return max(line[0] + line[1] * float(k), min(s for _, s in same) * 0.5)
        return _scaled_mean(k, same)
    untrained = k == "0"
    alike = [(g, kk, s) for g, kk, s in finished if (kk == "0") == untrained]
    backbone = group.partition("/")[2]  # a run id has no "/"; a backbone path may
    for pool in ([x for x in alike if x[0].partition("/")[2] == backbone], alike):
        if pool:
            return _scaled_mean(k, [(kk, s) for _, kk, s in pool])
    if finished:
        return sum(s for _, _, s in finished) / len(finished)
    return None


def estimate_left(
    finished: list[tuple[str, str, float]],
    running: list[tuple[str, str, float]],
    pending: list[tuple[str, str]],
    workers: int,
    prior: dict | None = None,
) -> float | None:
    """Seconds until the grid ends: the running cells' (group, K, elapsed) finish first, then the pending
    (group, K) cells start in order on whichever of ``workers`` slots frees first (list scheduling, as the
    engine runs them). None until a cell has finished (nothing to estimate from)."""
    if not finished and not prior:
        return None
    slots = [max(0.0, (cell_estimate(g, k, finished, prior) or 0.0) - elapsed) for g, k, elapsed in running]
    slots += [0.0] * max(0, workers - len(slots))
    for g, k in pending:
        i = min(range(len(slots)), key=slots.__getitem__)
        slots[i] += cell_estimate(g, k, finished, prior) or 0.0
    return max(slots, default=0.0)


class GridProgress:
    """What a person watching a grid wants: elapsed time, cells done and left, the time left, and each running
    cell's step (from the progress lines the cell writes to its log.txt). On a terminal one status line is
    redrawn in place; elsewhere a plain line every ``line_every`` seconds."""

    def __init__(
        self,
        cells: list[tuple[str, str, str]],
        workers: int,
        stream,
        out,
        clock=time.monotonic,
        prior: dict | None = None,
    ):
        """``cells``: (path, group, K) of each cell to run, in the order the engine starts them; ``prior``:
        the cost model's seconds per (group, K), used until cells of that group have finished."""
        self.prior = prior
        self.pending = {path: (group, k) for path, group, k in cells}
        self.total, self.workers, self.stream, self.out, self.clock = len(cells), workers, stream, out, clock
        self.started_at = clock()
        self.running: dict[str, tuple[str, str, float]] = {}
        self.finished: list[tuple[str, str, float]] = []
        self.live = hasattr(stream, "isatty") and stream.isatty()
        self.line_every, self.last_line = 60.0, self.started_at
        self.drawn = False

    def start(self, path: str) -> None:
        group, k = self.pending.pop(path, ("?", "?"))
        self.running[path] = (group, k, self.clock())

    def end(self, path: str) -> None:
        group, k, since = self.running.pop(path, ("?", "?", self.clock()))
        self.finished.append((group, k, self.clock() - since))

    def left(self) -> float | None:
        now = self.clock()
        running = [(g, k, now - since) for g, k, since in self.running.values()]
        return estimate_left(self.finished, running, list(self.pending.values()), self.workers, self.prior)

    def summary(self, count: bool = True) -> str:
        """``elapsed 3m12s, 10/38 done, 28 left, about 7m05s left`` (``count=False``: without "10/38 done",
        for the lines that start with [10/38])."""
        done = len(self.finished)
        text = f"elapsed {format_duration(self.clock() - self.started_at)}"
        if count:
            text += f", {done}/{self.total} done"
        left = self.left()
        if done < self.total:
            text += f", {self.total - done} left"
            text += (
                ", time left: estimated after the first cell"
                if left is None
                else f", about {format_duration(left)} left"
            )
        return text

    def steps(self) -> str:
        parts = []
        for path in self.running:
            step = last_step(self.out / path / "log.txt") if self.out is not None else None
            parts.append(f"{path}" + (f" {step}" if step else ""))
        return "; ".join(parts)

    def clear(self) -> str:
        """Printed before a normal line on a terminal: erases the status line."""
        if self.drawn:
            self.drawn = False
            return "\r\x1b[K"
        return ""

    def tick(self) -> None:
        """Called about once a second while cells run."""
        now = self.clock()
        if self.live:
            line = f"  {self.summary()} | running: {self.steps()}"
            width = shutil.get_terminal_size((120, 20)).columns
            self.stream.write("\r\x1b[K" + line[: width - 1])
            self.stream.flush()
            self.drawn = True
        elif now - self.last_line >= self.line_every:
            self.last_line = now
            print(f"  progress: {self.summary()}; running: {self.steps()}", file=self.stream, flush=True)


def last_step(log: Path) -> str | None:
    """The newest ``desc: done/total`` line a cell's progress wrote to its log, as ``desc done/total``."""
    try:
        with log.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        m = STEP_LINE.match(line)
        if m:
            return f"{m['desc']} {m['done']}/{m['total']}"
    return None
