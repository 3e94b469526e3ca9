"""Which process this is, and the one place an ``accelerate.Accelerator`` is made.

Launched with ``accelerate launch`` (or torchrun) every process runs the same command; accelerate reads the
launcher's environment and sets up DDP, FSDP or DeepSpeed. Launched plainly, there is one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from taskfit.errors import TaskfitError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _state():
    """accelerate's process state; without a GPU, several processes talk over gloo on the CPU (accelerate only
    picks that when asked for the CPU, so ask whenever there is no GPU)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    """Only the main process writes a cell's files; the others train alongside it."""
    return world_size() == 1 or _state().is_main_process


def wait_for_everyone() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


@dataclass
class RunOptions:
    """Where and how a training run checkpoints, resumes and reports. The default: none of it."""

    checkpoint_dir: Path | None = None
    resume: bool = False
    fingerprint: str = ""  # checkpoints written under another cell key are not resumed from
    mixed_precision: str = "no"
    fused_optimizer: str = "auto"  # training.optim.adamw's choice: auto, on, off
    fast_dropout: str = "auto"  # training.dropout: auto (cheap masks on a CPU) or off
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = None
    keep_checkpoints: int = 2
    report_to: list[str] = field(default_factory=list)
    tracking_dir: Path | None = None
    run_name: str = "taskfit"
    # called after each epoch with its number; True stops training there (cross-validated folds run in
    # lockstep and stop together once their mean curve has stopped improving: compare/lockstep.py)
    epoch_end: Callable[[int], bool] | None = None


def make_accelerator(run: RunOptions, device: torch.device):
    """An Accelerator on ``device`` (where the strategy already put the model: no device placement here).

    ``split_batches``: a batch from the loop is the global batch that the processes share, so the scheduler
    steps once per optimiser step whatever the process count. ``find_unused_parameters``: some backbones
    compute outputs the loss never uses (BERT's pooler)."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState
    from accelerate.utils import AutocastKwargs

    from taskfit.training.precision import resolve_precision

    precision = resolve_precision(run.mixed_precision, device)
    kwargs = dict(
        mixed_precision=precision,
        cpu=device.type == "cpu",
        device_placement=False,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        # no weight-cast cache: inside a cell's own autocast (training.precision.autocast) the cache would
        # outlive the step and serve weights from before the optimiser's update
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=True),
            AutocastKwargs(cache_enabled=False),
        ],
        log_with=list(run.report_to) or None,
        project_dir=str(run.tracking_dir) if run.tracking_dir else None,
    )
    try:
        return Accelerator(**kwargs)
    except ValueError as exc:
        if "already been initialized" in str(exc) and world_size() == 1:
            # one process running several cells with different settings: accelerate keeps one global state
            AcceleratorState._reset_state(reset_partial_state=True)
            try:
                return Accelerator(**kwargs)
            except ValueError as again:
                exc = again
        raise TaskfitError(f"training.mixed_precision={precision} on {device}: {exc}") from exc
