"""The continual methods, as hooks on plain sequential fine-tuning (the ``naive`` baseline is ``Method``
itself). A method decides what trains in a stage, may add a term to each batch's loss, and may keep something
from a finished stage (a Fisher, an anchor, a buffer, a frozen copy).

Written here rather than taken from a library: avalanche and similar frameworks bring their own training
loops, models and data streams; these methods are a few lines each on taskfit's own loop.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from taskfit.continual.model import MultiHeadClassifier, adapter_name, tokenize
from taskfit.data.readers import Example
from taskfit.training.optim import adamw


@dataclass
class Tools:
    """What a method needs to compute losses on its own examples."""

    tokenizer: object
    max_length: int
    device: torch.device
    seed: int

    def cross_entropy(self, model: MultiHeadClassifier, task: str, examples: list[Example]) -> torch.Tensor:
        labels = model.task_labels[task]
        targets = torch.tensor([labels.index(e.label) for e in examples], device=self.device)
        return F.cross_entropy(
            model(task, **tokenize(self.tokenizer, examples, self.max_length, self.device)), targets
        )


class Method:
    """Naive sequential fine-tuning: the shared encoder and the current task's head train; nothing is kept."""

    def __init__(self, config, tools: Tools) -> None:
        self.config, self.tools = config, tools
        self.past: list[str] = []  # finished tasks, in order

    def prepare_stage(self, model: MultiHeadClassifier, task: str) -> None:
        """Which parameters train in ``task``'s stage."""
        model.requires_grad_(False)
        model.encoder.requires_grad_(True)
        for name in self.trained_heads(task):
            model.heads[name].requires_grad_(True)

    def trained_heads(self, task: str) -> list[str]:
        return [task]

    def extra_loss(
        self, model: MultiHeadClassifier, batch: dict, pooled: torch.Tensor
    ) -> torch.Tensor | None:
        """Added to the current task's cross-entropy; ``pooled`` is the batch's (B, H) features."""
        return None

    def after_stage(self, model: MultiHeadClassifier, task: str, train: list[Example]) -> None:
        self.past.append(task)


def _snapshot(model: MultiHeadClassifier) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.shared_parameters().items()}


class L2(Method):
    """strength/2 * ||theta - theta*||^2 over the shared encoder, theta* its weights after the previous stage."""

    anchor: dict[str, torch.Tensor] | None = None

    def extra_loss(self, model, batch, pooled):
        if self.anchor is None:
            return None
        params = model.shared_parameters()
        total = sum(((params[n] - a) ** 2).sum() for n, a in self.anchor.items())
        return 0.5 * self.config.strength * total

    def after_stage(self, model, task, train):
        super().after_stage(model, task, train)
        self.anchor = _snapshot(model)


class EWC(Method):
    """One quadratic penalty per finished task, weighted by its diagonal Fisher (Kirkpatrick et al. 2017).

    The Fisher is the expected one: per example, a label sampled from the model's own prediction, the squared
    gradient of its log-probability. It is divided by its mean over parameters, so that ``strength`` is on the
    scale of ``l2``'s (F = 1 everywhere would be l2 to that task's weights)."""

    def __init__(self, config, tools: Tools) -> None:
        super().__init__(config, tools)
        self.penalties: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []  # (F, theta*)

    def extra_loss(self, model, batch, pooled):
        if not self.penalties:
            return None
        params = model.shared_parameters()
        total = sum(
            (fisher[n] * (params[n] - anchor[n]) ** 2).sum()
            for fisher, anchor in self.penalties
            for n in fisher
        )
        return 0.5 * self.config.strength * total

    def after_stage(self, model, task, train):
        super().after_stage(model, task, train)
        self.penalties.append((self.fisher(model, task, train), _snapshot(model)))

    def fisher(self, model: MultiHeadClassifier, task: str, train: list[Example]) -> dict[str, torch.Tensor]:
        params = {n: p for n, p in model.shared_parameters().items() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        rng = random.Random(f"{self.tools.seed}/fisher/{task}")
        examples = rng.sample(train, min(len(train), self.config.fisher_samples))
        generator = torch.Generator().manual_seed(self.tools.seed)
        model.eval()
        model.use_task(task)
        for example in examples:  # one at a time: the Fisher needs per-example gradients
            model.zero_grad(set_to_none=True)
            batch = tokenize(self.tools.tokenizer, [example], self.tools.max_length, self.tools.device)
            log_probs = F.log_softmax(model(task, **batch), -1)[0]  # (C,)
            label = torch.multinomial(log_probs.detach().exp().cpu(), 1, generator=generator).item()
            log_probs[label].backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2
        model.zero_grad(set_to_none=True)
        mean = torch.stack([f.sum() for f in fisher.values()]).sum() / sum(f.numel() for f in fisher.values())
        return {n: f / mean.clamp_min(1e-30) for n, f in fisher.items()}


class Replay(Method):
    """Experience replay: every batch of a later stage also carries ``replay_batch_size`` examples drawn from a
    fixed-size buffer of past tasks' training examples (each through its own task's head, which trains too)."""

    def __init__(self, config, tools: Tools) -> None:
        super().__init__(config, tools)
        self.buffer: list[tuple[str, Example]] = []
        self.seen = 0  # reservoir: examples of the stream so far
        self.rng = random.Random(f"{tools.seed}/replay")
        self.generator = torch.Generator().manual_seed(tools.seed)

    def trained_heads(self, task: str) -> list[str]:
        return [*self.past, task]

    def extra_loss(self, model, batch, pooled):
        if not self.buffer:
            return None
        n = min(len(self.buffer), self.config.replay_batch_size or len(pooled))
        picked = [
            self.buffer[i] for i in torch.randperm(len(self.buffer), generator=self.generator)[:n].tolist()
        ]
        by_task: dict[str, list[Example]] = {}
        for task, example in picked:
            by_task.setdefault(task, []).append(example)
        return sum(len(ex) / n * self.tools.cross_entropy(model, t, ex) for t, ex in by_task.items())

    def after_stage(self, model, task, train):
        super().after_stage(model, task, train)
        stream = [(task, e) for e in train]
        if self.config.policy == "reservoir":
            self._reservoir(stream)
        else:
            self._balanced(stream)

    def _reservoir(self, stream: list[tuple[str, Example]]) -> None:
        """Vitter's algorithm R: every example of the stream so far is in the buffer with equal probability."""
        size = self.config.buffer_size
        for item in stream:
            self.seen += 1
            if len(self.buffer) < size:
                self.buffer.append(item)
            else:
                j = self.rng.randrange(self.seen)
                if j < size:
                    self.buffer[j] = item

    def _balanced(self, stream: list[tuple[str, Example]]) -> None:
        """Equal slots per (task, label) seen so far; a group over its quota drops examples at random."""
        groups: dict[tuple[str, str], list[tuple[str, Example]]] = {}
        for item in self.buffer + stream:
            groups.setdefault((item[0], item[1].label), []).append(item)
        quota, extra = divmod(self.config.buffer_size, len(groups))
        self.buffer = []
        for i, members in enumerate(groups.values()):
            self.rng.shuffle(members)
            self.buffer.extend(members[: quota + (1 if i < extra else 0)])


class LwF(Method):
    """Learning without forgetting: the model as it was after the previous stage labels the current batch
    through every past task's head; the current model's outputs on those heads are pulled towards them
    (KL at ``temperature``, times T^2 as Hinton et al. do). Past heads stay frozen; only features move."""

    old: MultiHeadClassifier | None = None

    def extra_loss(self, model, batch, pooled):
        if self.old is None:
            return None
        T = self.config.temperature
        with torch.no_grad():
            old_pooled = self.old.features(**batch)  # eval mode: no dropout in the targets
        total = 0.0
        for task in self.past:
            target = F.softmax(self.old.heads[task](old_pooled) / T, -1)
            log_pred = F.log_softmax(model.heads[task](pooled) / T, -1)
            total = total + F.kl_div(log_pred, target, reduction="batchmean") * T * T
        return self.config.alpha * total

    def after_stage(self, model, task, train):
        super().after_stage(model, task, train)
        self.old = copy.deepcopy(model).eval().requires_grad_(False)


class PerTaskLora(Method):
    """Only the current task's LoRA adapter and head train; the base encoder and other tasks' parts are
    untouched, so predictions on a finished task cannot change."""

    def prepare_stage(self, model, task):
        model.requires_grad_(False)
        model.use_task(task)
        for name, p in model.encoder.named_parameters():
            if "lora_" in name and f".{adapter_name(task)}." in name:
                p.requires_grad_(True)
        model.heads[task].requires_grad_(True)


class PerTaskAdapter(Method):
    """Only the current task's bottleneck adapters and head train (the rest of the encoder is frozen)."""

    def prepare_stage(self, model, task):
        model.requires_grad_(False)
        model.use_task(task)
        for name, p in model.encoder.named_parameters():
            if f".adapters.{task}." in name:
                p.requires_grad_(True)
        model.heads[task].requires_grad_(True)


METHODS: dict[str, type[Method]] = {
    "naive": Method,
    "ewc": EWC,
    "l2": L2,
    "replay": Replay,
    "lwf": LwF,
    "per-task-lora": PerTaskLora,
    "per-task-adapter": PerTaskAdapter,
}


def make_optimizer(
    model: nn.Module, lr: float, head_lr: float, weight_decay: float, fused: str = "auto"
) -> torch.optim.Optimizer:
    """head-finetune's groups: no decay on biases and LayerNorms, the heads at their own learning rate; AdamW
    fused where torch supports it (``training.optim.adamw``)."""
    decay, no_decay, heads = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (heads if name.startswith("heads.") else no_decay if p.ndim < 2 else decay).append(p)
    return adamw(
        [
            {"params": decay, "lr": lr, "weight_decay": weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
            {"params": heads, "lr": head_lr, "weight_decay": weight_decay},
        ],
        fused=fused,
    )
