"""Which precision a run computes in, and autocast for the passes that do not train.

``auto`` (the default) is bf16 where the hardware does bf16 matrix products natively and fp32 elsewhere:
on a CPU with AMX tiles (Intel Sapphire Rapids and later) a bf16 matmul ran 4-5x the fp32 one here
(BENCHMARKS.md, issue 22), on a CUDA GPU with bf16 support it is the field's usual choice; without either,
bf16 is emulated and slower than fp32, so ``auto`` stays fp32. Weights stay fp32 (autocast), so optimiser
updates are not rounded; the label-word and loss softmaxes run in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager

import torch

PRECISIONS = ("auto", "no", "bf16", "fp16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so guarded
        return bool(amx and amx())
    return False


def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` or ``no`` for this device; the others as given."""
    if setting != "auto":
        return setting
    return "bf16" if native_bf16(device) else "no"


def config_precision(config) -> str:
    """An experiment's precision on the device its cells run on (what a cell's key records)."""
    from taskfit.models.backbones import resolve_device

    return resolve_precision(config.training.mixed_precision, resolve_device(config.device))


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Autocast in ``precision`` (``no``: nothing) around everything a cell computes, training included.

    The weight-cast cache is off: autocast clears it only when its outermost context exits, so with it on, a
    training step inside this context would run on the bf16 copies of the weights from before the previous
    optimiser step. Off, each layer casts its weights per call (a few percent of a small step)."""
    device = torch.device(device)
    if precision in ("bf16", "fp16") and device.type in ("cpu", "cuda"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        with torch.autocast(device.type, dtype=dtype, cache_enabled=False):
            yield
    else:
        yield


def frozen_linear_casts(model: torch.nn.Module, device_type: str) -> Callable[[], ContextManager]:
    """A context for one training step's forward and backward in which the frozen ``nn.Linear`` weights hold
    their autocast-dtype copies, made once here (nullcontext when autocast is off).

    Autocast casts every weight at every call, and its cache is off (see ``autocast``); for weights that never
    change (LoRA's base layers, frozen layers) those casts were 6% of a minilm LoRA step, profiled (BENCHMARKS.md,
    issue 22). The values are the ones autocast would have made, so the step computes the same numbers. The
    fp32 weights are back outside the step: evaluation, checkpoints and saved models never see the copies. A
    weight another kind of module shares (an LM head tied to the embeddings) and any LM head (scored in fp32
    with autocast off, ``models.lm_scoring``) are left alone."""
    if not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext
    dtype = torch.get_autocast_dtype(device_type)
    shared = {
        id(p)
        for m in model.modules()
        if not isinstance(m, torch.nn.Linear)
        for p in m.parameters(recurse=False)
    }
    for m in model.modules():  # an LM head, tied or not: label-word scores run it in fp32, outside autocast
        head = m.get_output_embeddings() if callable(getattr(m, "get_output_embeddings", None)) else None
        if isinstance(getattr(head, "weight", None), torch.Tensor):
            shared.add(id(head.weight))
    pairs: dict[int, tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = {}
    for m in model.modules():
        w = getattr(m, "weight", None)
        if (
            isinstance(m, torch.nn.Linear)
            and isinstance(w, torch.nn.Parameter)
            and not w.requires_grad
            and w.dtype == torch.float32
            and id(w) not in shared
        ):
            pairs[id(w)] = (w, w.data, w.data.to(dtype))
    if not pairs:
        return contextlib.nullcontext

    @contextlib.contextmanager
    def swapped() -> Iterator[None]:
        for w, _, low in pairs.values():
            w.data = low
        try:
            yield
        finally:  # after the backward: autograd saved these weights for it
            for w, full, _ in pairs.values():
                w.data = full

    return swapped
