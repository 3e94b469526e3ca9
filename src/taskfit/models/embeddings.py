"""Sentence embeddings by mean pooling over real tokens.

all-MiniLM-L6-v2's BERT pooler was never trained by its sentence objective, so the [CLS]/pooler output
is not a sentence embedding; the mean of the last hidden states (masking pads) is what it was trained for.
"""

from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) -> (B, H): average of the non-padding positions."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


@torch.no_grad()
def embed_texts(
    model, tokenizer, texts: list[str], batch_size: int = 64, max_length: int = 256
) -> torch.Tensor:
    """(N, H) L2-normalised embeddings, in the order of ``texts``."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(0)
    parts: dict[int, torch.Tensor] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(model.device)
        hidden = model(**enc).last_hidden_state
        pooled = torch.nn.functional.normalize(mean_pool(hidden.float(), enc["attention_mask"]), dim=-1).cpu()
        for k, i in enumerate(idx):
            parts[i] = pooled[k]
    if parts:
        out = torch.stack([parts[i] for i in range(len(texts))])
    return out
