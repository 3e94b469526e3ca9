"""The continual model: one shared encoder (from the head-finetune strategy) with one linear head per task;
for ``per-task-lora`` the encoder is a frozen base with one peft LoRA adapter per task, for ``per-task-adapter``
one Houlsby bottleneck per task after each sub-layer. The task is named at
every call: this is the task-incremental setting, where each task keeps its own label set.

Saved as a folder: ``model.safetensors`` (the whole module, base weights included, so that it reloads without
the original backbone), the encoder's ``config.json`` and tokenizer, and ``continual.json`` (tasks, labels,
method) with what rebuilding needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from taskfit.data.readers import Example
from taskfit.errors import TaskfitError, did_you_mean
from taskfit.io import save_safetensors_atomic, write_json_atomic
from taskfit.strategies.head_finetune import EncoderClassifier
from taskfit.strategies.tuning import Bottleneck, lora_config

MODEL_FILE = "continual.json"
WEIGHTS_FILE = "model.safetensors"


class MultiHeadClassifier(EncoderClassifier):
    """EncoderClassifier's encoder and pooling, with a head per task instead of one."""

    def __init__(self, encoder: nn.Module, task_labels: dict[str, list[str]], dropout: float, pooling: str):
        super().__init__(encoder, 1, dropout, pooling)
        del self.head
        hidden = encoder.config.hidden_size
        self.task_labels = dict(task_labels)
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, len(labels)) for t, labels in task_labels.items()})

    def forward(self, task: str, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.heads[task](self.dropout(self.features(input_ids, attention_mask, token_type_ids)))

    @property
    def is_peft(self) -> bool:
        from peft import PeftModel

        return isinstance(self.encoder, PeftModel)

    def use_task(self, task: str) -> None:
        """Route through ``task``'s adapter (per-task-lora); a shared encoder needs nothing."""
        if task not in self.heads:
            raise TaskfitError(
                f"unknown task '{task}'; this model knows {', '.join(self.heads)}."
                + did_you_mean(task, self.heads)
            )
        if self.is_peft:
            self.encoder.set_adapter(adapter_name(task))
        for module in self.encoder.modules():
            if isinstance(module, TaskAdapters):
                module.active = task

    def shared_parameters(self) -> dict[str, nn.Parameter]:
        """What every task uses (the encoder): the parameters a regulariser protects."""
        return {f"encoder.{n}": p for n, p in self.encoder.named_parameters()}


class TaskAdapters(nn.Module):
    """A projection followed by one bottleneck adapter per task; the active task's is applied."""

    def __init__(self, inner: nn.Linear, bottleneck: int, tasks: list[str]) -> None:
        super().__init__()
        self.inner = inner
        self.adapters = nn.ModuleDict({t: Bottleneck(inner.out_features, bottleneck) for t in tasks})
        self.active = tasks[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapters[self.active](self.inner(x))


def add_task_adapters(encoder: nn.Module, method, tasks: list[str]) -> None:
    """The adapter strategy's placement (ADAPTER_MODULES), with one bottleneck per task at each place."""
    from taskfit.strategies.tuning import ADAPTER_MODULES, check_targets

    model_type = getattr(encoder.config, "model_type", "")
    suffixes = method.adapter_modules or ADAPTER_MODULES.get(model_type)
    if not suffixes:
        raise TaskfitError(
            f"per-task-adapter: no default placement for model type '{model_type}'; set adapter_modules"
        )
    check_targets(encoder, suffixes, "adapter_modules")
    bottleneck = max(1, encoder.config.hidden_size // method.reduction_factor)
    for name, module in list(encoder.named_modules()):
        if isinstance(module, nn.Linear) and any(name.endswith(s) for s in suffixes):
            parent = encoder.get_submodule(name.rsplit(".", 1)[0]) if "." in name else encoder
            setattr(parent, name.rsplit(".", 1)[-1], TaskAdapters(module, bottleneck, tasks))


def tokenize(tokenizer, examples: list[Example], max_length: int, device) -> dict[str, torch.Tensor]:
    """Padded to the longest example of the batch, as head-finetune does."""
    pair = [e.text_pair for e in examples] if examples[0].text_pair is not None else None
    enc = tokenizer(
        [e.text for e in examples],
        pair,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def adapter_name(task: str) -> str:
    """peft warns about adapter names inside its own 'lora_' prefix (a task called 'a' would be one)."""
    return f"task-{task}"


def build_model(
    encoder: nn.Module, task_labels: dict[str, list[str]], method, dropout: float, pooling: str, seed: int
) -> MultiHeadClassifier:
    """All heads (and adapters) exist from the start, initialised from ``seed``: a task not trained yet is
    evaluated through its untrained head, which is what forward transfer compares against."""
    torch.manual_seed(seed)
    if method.name == "per-task-lora":
        from peft import get_peft_model

        tasks = list(task_labels)
        config = lora_config(method, encoder)
        encoder = get_peft_model(encoder, config, adapter_name=adapter_name(tasks[0]))
        for task in tasks[1:]:
            encoder.add_adapter(adapter_name(task), config)
    if method.name == "per-task-adapter":
        add_task_adapters(encoder, method, list(task_labels))
    return MultiHeadClassifier(encoder, task_labels, dropout, pooling)


@torch.no_grad()
def predict_task(
    model: MultiHeadClassifier,
    tokenizer,
    examples: list[Example],
    task: str,
    max_length: int,
    batch_size: int = 64,
) -> tuple[list[str], torch.Tensor]:
    """Labels and probabilities of ``task``'s head for ``examples``."""
    model.eval()
    model.use_task(task)
    device = next(model.parameters()).device
    labels = model.task_labels[task]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text))  # less padding per batch
    logits = torch.empty(len(examples), len(labels))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenize(tokenizer, [examples[i] for i in idx], max_length, device)
        logits[idx] = model(task, **batch).float().cpu()
    probs = torch.softmax(logits, -1)
    return [labels[i] for i in probs.argmax(-1).tolist()], probs


def save_model(directory: Path, model: MultiHeadClassifier, tokenizer, info: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder.get_base_model() if model.is_peft else model.encoder
    encoder.config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    save_safetensors_atomic(model, directory / WEIGHTS_FILE)
    write_json_atomic(directory / MODEL_FILE, {**info, "task_labels": model.task_labels})


class ContinualModel:
    """A saved continual model for prediction: ``predict(examples, task_name)``."""

    def __init__(self, model: MultiHeadClassifier, tokenizer, max_length: int) -> None:
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    @property
    def tasks(self) -> list[str]:
        return list(self.model.task_labels)

    def predict(self, examples: list[Example], task_name: str) -> list[str]:
        return predict_task(self.model, self.tokenizer, examples, task_name, self.max_length)[0]

    def for_task(self, task_name: str | None) -> TaskPredictor:
        """What ``taskfit predict --task-name`` streams a file through (the serving predictor's row format)."""
        if task_name is None:
            raise TaskfitError(
                f"this is a continual model with one head per task: give --task-name ({', '.join(self.tasks)})"
            )
        self.model.use_task(task_name)  # fails early, with the known names, on a wrong one
        return TaskPredictor(self, task_name)


class TaskPredictor:
    def __init__(self, model: ContinualModel, task: str) -> None:
        self.model, self.task = model, task

    def predict(self, examples) -> list[dict]:
        m = self.model
        labels, probs = predict_task(m.model, m.tokenizer, list(examples), self.task, m.max_length)
        names = m.model.task_labels[self.task]
        return [
            {"label": lab, "scores": dict(zip(names, map(float, p)))}
            for lab, p in zip(labels, probs.tolist())
        ]


def is_continual_run(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / MODEL_FILE).exists() or (d / "model" / MODEL_FILE).exists()


def load_continual_model(directory: str | Path) -> ContinualModel:
    """Rebuild a run's ``model/`` folder (architecture from its config, weights from its safetensors)."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from taskfit.config import CONTINUAL_METHODS

    directory = Path(directory)
    if (directory / "model" / MODEL_FILE).exists():
        directory = directory / "model"
    if not (directory / MODEL_FILE).exists():
        raise TaskfitError(f"{directory} is not a saved continual model: {MODEL_FILE} is missing")
    info = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
    method = CONTINUAL_METHODS[info["method"]["name"]].model_validate(info["method"])
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(directory))
    model = build_model(encoder, info["task_labels"], method, info["dropout"], info["pooling"], seed=0)
    load_model(model, str(directory / WEIGHTS_FILE))
    return ContinualModel(model.eval(), AutoTokenizer.from_pretrained(directory), info["max_length"])
