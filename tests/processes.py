"""Helpers for crash tests that wait on events (a file appears, a process stops or exits), never on the clock:
a shared CI machine may run them at any speed. The deadlines here are failsafes that end a stuck test."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import subprocess
import time
from pathlib import Path

FAILSAFE_S = 600


def find(root: Path, pattern: str, dirs: bool = False) -> list[Path]:
    """Paths under ``root`` whose name matches ``pattern``. Unlike ``Path.rglob`` it tolerates folders that
    vanish during the walk (a run rotating its checkpoints), which os.walk skips instead of raising."""
    found = []
    for parent, subdirs, files in os.walk(root):
        found += [Path(parent, n) for n in (subdirs if dirs else files) if fnmatch.fnmatch(n, pattern)]
    return found


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z, ...), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, parents first."""
    pids, frontier = [], [pid]
    while frontier:
        current = frontier.pop(0)
        pids.append(current)
        children = subprocess.run(["pgrep", "-P", str(current)], capture_output=True, text=True).stdout
        frontier += [int(c) for c in children.split()]
    return pids


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def freeze(pid: int) -> list[int]:
    """SIGSTOP ``pid`` and then each descendant as it is found (a parent first, so it spawns nothing new)."""
    pids, frontier = [], [pid]
    while frontier:
        current = frontier.pop(0)
        with contextlib.suppress(ProcessLookupError):
            os.kill(current, signal.SIGSTOP)
        pids.append(current)
        children = subprocess.run(["pgrep", "-P", str(current)], capture_output=True, text=True).stdout
        frontier += [int(c) for c in children.split()]
    return pids


def wait_until(condition, what: str, failsafe_s: float = FAILSAFE_S, poll_s: float = 0.01):
    """Poll ``condition`` until it returns something truthy (returned); the failsafe only ends a stuck test."""
    deadline = time.monotonic() + failsafe_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {failsafe_s:.0f} s"
        time.sleep(poll_s)


def gone(pids: list[int]) -> bool:
    """Every one exited (a zombie counts: it runs no more code)."""
    return all(state(pid) in (None, "Z") for pid in pids)
