"""The one place an optimiser is made: AdamW with torch's fused kernel wherever it runs.

Measured on a minilm head-finetune step (issue 22): the default AdamW step took 163 ms of a 395 ms step on one
CPU thread, the fused one 30 ms. The fused kernel computes the same update (to float rounding: it evaluates
the same formula in one pass over each tensor instead of one pass per operation), so it is not part of a
cell's key; ``training.fused_optimizer: off`` keeps torch's default implementation (what taskfit used before).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

from taskfit.errors import TaskfitError

FusedChoice = Literal["auto", "on", "off"]
FUSED_CHOICES = ("auto", "on", "off")


def fused_supported(params: Iterable[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW takes these parameters: floating point, dense, and all on a device type that
    has the fused kernels (CPU from torch 2.4, CUDA, XPU, MPS...)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = set(_get_fused_kernels_supported_devices())
    params = list(params)
    return bool(params) and all(
        p.device.type in devices and torch.is_floating_point(p) and not p.is_sparse for p in params
    )


def adamw(param_groups: list, fused: FusedChoice | bool = "auto", **defaults) -> torch.optim.Optimizer:
    """``torch.optim.AdamW(param_groups, **defaults)`` with the fastest implementation torch has for the
    parameters: ``fused`` where supported ("auto"), required ("on": an error where unsupported) or never
    ("off": torch's default, exactly the optimiser taskfit used before). ``param_groups`` is a list of tensors
    or of group dicts, as torch takes it; groups stay as given (checkpointed optimiser states index them)."""
    if fused is True:
        fused = "on"
    elif fused is False:
        fused = "off"
    if fused not in FUSED_CHOICES:
        raise TaskfitError(f"fused_optimizer: {fused!r} is not one of auto, on, off")
    groups = list(param_groups)
    if groups and isinstance(groups[0], dict):
        params = [p for g in groups for p in g["params"]]
    else:
        params = groups
    supported = fused_supported(params)
    if fused == "on" and not supported:
        kinds = sorted({f"{p.device.type}/{p.dtype}" for p in params})
        raise TaskfitError(
            f"training.fused_optimizer: on, but torch {torch.__version__} has no fused AdamW for parameters on "
            f"{', '.join(kinds) or 'no device'}; use auto (fused where supported) or off"
        )
    if fused != "off" and supported:
        return torch.optim.AdamW(groups, fused=True, **defaults)
    return torch.optim.AdamW(groups, **defaults)
