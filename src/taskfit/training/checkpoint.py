"""Checkpoints of the training loop: ``<cell>/checkpoints/step-<n>/``, written whole or not at all.

A checkpoint is written into ``.tmp-step-<n>/`` and renamed into place; its ``manifest.json`` (every file's
size and sha256) is written last, so a folder without a manifest that matches its files is half-written or
damaged, and loading falls back to the previous one with a warning.

Contents: ``accelerator.save_state`` (model weights as safetensors; optimizer, scheduler and each process's
RNG states as torch pickles that accelerate writes: they are only ever read back from a checkpoint this code
wrote and whose hashes match) plus the loop's own state: ``loop_state.json`` (position, best score, stale
epochs, the log) and ``loop_state.safetensors`` (the data-order generator and the best epoch's snapshot).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import warnings
from pathlib import Path

import torch

MANIFEST = "manifest.json"
LOOP_STATE = "loop_state.json"
LOOP_TENSORS = "loop_state.safetensors"
PREFIX = "step-"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        os.fsync(f.fileno())  # on disk before the manifest says it is
    return digest.hexdigest()


def checkpoint_folders(root: Path) -> list[Path]:
    """Finished (renamed) checkpoint folders, newest first."""
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):  # not there (yet), or removed as the run finished
        return []
    found = [p for p in entries if p.name.startswith(PREFIX) and p.is_dir()]
    found = [p for p in found if p.name[len(PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]), reverse=True)


def save_checkpoint(
    accelerator, root: Path, step: int, state: dict, tensors: dict[str, torch.Tensor], keep: int
) -> Path:
    """Every process calls this (each saves its RNG state); the main process writes the rest and renames."""
    from safetensors.torch import save_file

    final, tmp = root / f"{PREFIX}{step}", root / f".tmp-{PREFIX}{step}"
    main = accelerator.is_main_process
    if main:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if main:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / LOOP_TENSORS))
        (tmp / LOOP_STATE).write_text(json.dumps(state), encoding="utf-8")
        files = {
            str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1), encoding="utf-8")
        _sha256(tmp / MANIFEST)  # fsync
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)
        for old in checkpoint_folders(root)[keep:]:
            shutil.rmtree(old, ignore_errors=True)
        _stop_here_if_asked(step)
    accelerator.wait_for_everyone()
    return final


STOP_AT_ENV = "TASKFIT_STOP_AT_CHECKPOINT"


def _stop_here_if_asked(step: int) -> None:
    """``TASKFIT_STOP_AT_CHECKPOINT=N``: the process stops itself (SIGSTOP) once checkpoint N is in place, so
    that a crash test can kill it at an exact step, waiting on that event rather than racing the clock."""
    if os.environ.get(STOP_AT_ENV) == str(step) and hasattr(signal, "SIGSTOP"):
        os.kill(os.getpid(), signal.SIGSTOP)


def verify(folder: Path) -> str | None:
    """None if every file the manifest lists is there with its size and hash, else what is wrong."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        return "no manifest: half-written"
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return f"unreadable manifest ({exc})"
    for name in (LOOP_STATE, LOOP_TENSORS):
        if name not in files:
            return f"the manifest does not list {name}"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {expected['bytes']}"
        if _sha256(path) != expected["sha256"]:
            return f"{name} does not match its sha256"
    return None


def latest_good(root: Path, fingerprint: str) -> Path | None:
    """The newest checkpoint that verifies and belongs to this run; bad ones are reported and removed."""
    for folder in checkpoint_folders(root):
        problem = verify(folder)
        if problem is None:
            saved = json.loads((folder / LOOP_STATE).read_text(encoding="utf-8")).get("fingerprint")
            if saved == fingerprint:
                return folder
            problem = f"written for another configuration ({saved}, this run is {fingerprint})"
        warnings.warn(
            f"checkpoint {folder} is unusable: {problem}; falling back to the previous one",
            stacklevel=2,
        )
        if _is_main():
            shutil.rmtree(folder, ignore_errors=True)
    return None


def _is_main() -> bool:
    from taskfit.training.distributed import is_main_process

    return is_main_process()


def load_checkpoint(accelerator, folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore the prepared model, optimizer, scheduler and RNG states; return the loop's state and tensors."""
    from safetensors.torch import load_file

    accelerator.load_state(str(folder))
    state = json.loads((folder / LOOP_STATE).read_text(encoding="utf-8"))
    return state, load_file(str(folder / LOOP_TENSORS))
