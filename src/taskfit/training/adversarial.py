"""Adversarial training on the embedding layer: FGM (Miyato et al. 2017) and PGD (Madry et al. 2018), as in the
FGM/PGD recipes for BERT fine-tuning.

The perturbation is added to the *output* of the input-embedding module through a forward hook, never to its
weight: the same code works whether the embedding trains (head-finetune) or is frozen (LoRA, prompt tuning),
nothing has to be restored afterwards (the hook is removed, the weight was never touched), and each example
gets its own perturbation. Written by hand: neither transformers nor peft ships adversarial training.

One training step with ``method: pgd`` and ``steps: 3`` runs four forward/backward passes: the clean one (which
also gives the gradient at the embeddings), two ascent steps that only move the perturbation, and the
adversarial pass whose gradient is added to the clean one before the optimiser step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from taskfit.config import AdversarialConfig
from taskfit.errors import TaskfitError


def input_embeddings(model: nn.Module) -> nn.Module:
    """The token-embedding module of the first transformers (or peft) model inside ``model``."""
    for module in model.modules():
        get = getattr(module, "get_input_embeddings", None)
        if callable(get):
            with contextlib.suppress(NotImplementedError, AttributeError):
                found = get()
                if isinstance(found, nn.Module):
                    return found
    raise TaskfitError(
        f"adversarial training needs a token-embedding layer, and {type(model).__name__} has no "
        "get_input_embeddings(); remove 'adversarial:' from this strategy"
    )


class EmbeddingPerturbation:
    """Adds a tensor to the embedding output on every call while active. The i-th call of a forward pass gets
    the i-th perturbation (a strategy may embed more than once per batch); ``deltas`` holds the tensors added,
    each a leaf that requires grad, so a backward pass fills ``delta.grad`` with the loss gradient at the
    embeddings."""

    def __init__(self, embeddings: nn.Module) -> None:
        self.embeddings = embeddings
        self.deltas: list[torch.Tensor] = []

    @contextlib.contextmanager
    def active(self, perturbations: list[torch.Tensor] | None, track: bool = True) -> Iterator[None]:
        """``perturbations`` None: add zeros (only to read the gradient); else add those (detached)."""
        self.deltas = []

        def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
            i = len(self.deltas)
            if perturbations is None:
                delta = torch.zeros_like(output, dtype=torch.float32)
            elif i >= len(perturbations) or perturbations[i].shape != output.shape:
                raise TaskfitError(
                    "adversarial training: the adversarial pass embedded a different batch than the clean "
                    f"pass (call {i}, shape {tuple(output.shape)}); the strategy's batches must be "
                    "deterministic for the same examples"
                )
            else:
                delta = perturbations[i].detach().clone()
            delta.requires_grad_(track)
            self.deltas.append(delta)
            return output + delta.to(output.dtype)

        handle = self.embeddings.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


def normalized(g: torch.Tensor) -> torch.Tensor:
    """``g / ||g||`` per example (norm over all but the first dimension); zero where the gradient is zero."""
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)  # (B,)
    return g / norm.view(-1, *([1] * (g.ndim - 1)))


def project(r: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Back into the L2 ball of radius ``epsilon``, per example."""
    norm = r.flatten(1).norm(dim=1)  # (B,)
    scale = torch.where(norm > epsilon, epsilon / norm.clamp_min(1e-12), torch.ones_like(norm))
    return r * scale.view(-1, *([1] * (r.ndim - 1)))


def adversarial_step(
    forward: Callable[[], torch.Tensor],
    backward: Callable[[torch.Tensor], None],
    perturbation: EmbeddingPerturbation,
    config: AdversarialConfig,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    on_adversarial: Callable[[list[torch.Tensor]], None] | None = None,
) -> torch.Tensor:
    """Clean forward/backward, then the adversarial one; both gradients stay accumulated in the parameters for
    the optimiser step. Returns the clean loss. ``no_sync`` keeps data-parallel processes from averaging
    gradients until the last backward (they are summed locally first, as with gradient accumulation);
    ``on_adversarial`` sees the perturbations of the final adversarial pass (for tests and logging)."""
    with no_sync(), perturbation.active(None):
        loss = forward()
        backward(loss)
    grads = [d.grad if d.grad is not None else torch.zeros_like(d) for d in perturbation.deltas]
    r = [torch.zeros_like(g) for g in grads]
    steps = config.steps if config.method == "pgd" else 1
    for step in range(steps):
        if config.method == "fgm":
            r = [config.epsilon * normalized(g) for g in grads]
        else:  # PGD: a step of size alpha along the normalised gradient, projected into the epsilon ball
            r = [project(ri + config.alpha * normalized(g), config.epsilon) for ri, g in zip(r, grads)]
        if step < steps - 1:
            # Only the perturbation moves: autograd.grad reads its gradient without accumulating any into the
            # parameters, so the clean gradients need no backup (the recipes' backup_grad/restore_grad).
            with no_sync(), perturbation.active(r):
                grads = list(torch.autograd.grad(forward(), perturbation.deltas, allow_unused=True))
            grads = [torch.zeros_like(ri) if g is None else g for g, ri in zip(grads, r)]
            continue
        with perturbation.active(r, track=False):
            adversarial_loss = forward()
            if on_adversarial is not None:
                on_adversarial([d.detach() for d in perturbation.deltas])
            backward(adversarial_loss * config.weight)
    return loss
