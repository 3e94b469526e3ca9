"""Dropout whose masks cost a quarter of torch's on a CPU.

torch draws a CPU dropout mask one 32-bit random number per element (``bernoulli_``, ~15 ns each, one
thread): a minilm training step draws ~38 masks, and those draws were 28% of a LoRA fit's time (profiled:
3.0 of 10.7 s, more than every matrix product of the forward pass together). Here a mask takes one
64-bit draw per four elements from the same seeded generator and compares 16-bit slices against the rate, so
the keep probability is ``1 - p`` rounded to 1/65536 (0.1 -> 0.100006). Written by hand because neither
torch nor transformers offers a cheaper CPU mask; on a GPU torch's own fused dropout is already fast and is
kept. The swap lasts for one training run only: saved and exported models hold plain ``nn.Dropout``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

_SLICES = 4  # 16-bit slices per 64-bit draw


def keep_mask(shape: torch.Size, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean mask, True with probability 1 - p (to 1/65536), from torch's default generator."""
    count = shape.numel()
    words = torch.empty(-(-count // _SLICES), dtype=torch.int64, device=device)
    words.random_(-(2**63), None)  # the full 64 bits: random_() alone leaves the sign bit 0
    slices = words.view(torch.int16)[:count].view(shape)
    return slices >= round(p * 65536) - 32768


def cheap_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout (kept values scaled by 1/(1-p)), as ``nn.functional.dropout`` in training mode."""
    if p <= 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    scale = keep_mask(x.shape, p, x.device).to(x.dtype) * (1.0 / (1.0 - p))
    return x * scale  # autograd keeps ``scale``: the backward pass multiplies by the same mask


class CheapMaskDropout(nn.Dropout):
    """``nn.Dropout`` with the masks of :func:`cheap_dropout` (a subclass, so ``isinstance`` checks still hold)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return cheap_dropout(x, self.p)


def uses_cheap_masks(setting: str, device: torch.device) -> bool:
    """``training.fast_dropout``: auto swaps on a CPU only (CUDA's dropout is a fused kernel already)."""
    return setting == "auto" and torch.device(device).type == "cpu"


ATTENTION = "taskfit_sdpa_cheap_dropout"


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' SDPA attention, except while training with attention dropout on a bidirectional layer
    (BERT-like): then the eager computation (scores, mask, softmax, dropout, values) with a cheap mask. SDPA
    takes the same eager path on a CPU whenever dropout is on, drawing its mask with ``bernoulli_``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = getattr(module, "is_causal", False) or kwargs.get("is_causal")
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    if not (module.training and dropout > 0.0) or causal or grouped:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scores = torch.matmul(query, key.transpose(2, 3)) * (
        query.size(-1) ** -0.5 if scaling is None else scaling
    )
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # SDPA's mask format: True attends
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = cheap_dropout(torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype), dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _register_attention() -> bool:
    """Our attention under its own name in transformers' documented registries (idempotent); False where this
    transformers has none (then attention dropout keeps torch's masks; the modules are still swapped)."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    return True


@contextlib.contextmanager
def cheap_dropout_masks(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block every ``nn.Dropout`` of ``model`` draws cheap masks, and so does the attention of
    transformers models that run SDPA; yields how many modules were swapped. Modules are swapped by class only
    (their object, hooks and ``p`` stay); everything is put back on the way out."""
    swapped, configs = [], []
    if enabled:
        for module in model.modules():
            if type(module) is nn.Dropout and module.p > 0.0:
                module.__class__ = CheapMaskDropout
                swapped.append(module)
        models = [
            m
            for m in model.modules()
            if getattr(getattr(m, "config", None), "_attn_implementation", "") == "sdpa"
        ]
        if models and _register_attention():
            for m in models:
                if m.config._attn_implementation == "sdpa":  # a config shared by several modules: once
                    m.config._attn_implementation = ATTENTION
                    configs.append(m.config)
    try:
        yield len(swapped)
    finally:
        for module in swapped:
            module.__class__ = nn.Dropout
        for config in configs:
            config._attn_implementation = "sdpa"
