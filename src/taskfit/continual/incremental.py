"""Incremental update of a deployed model (``from: RUN_DIR`` on a ``taskfit run``/``compare`` config): a cell
starts from a saved classification run's weights instead of the pretrained backbone, fine-tunes on the new
data, and limits forgetting of the old data with one of the continual methods (naive, l2, ewc, replay).

The saved run and the cell must be the same strategy on the same backbone with the same label set (one
head, shared by old and new data). The methods see the strategy's classifier through ``SingleHeadView``, so
the code of ``taskfit continual`` serves here too: everything that trains is "shared" (the head included).
"""

from __future__ import annotations

from pathlib import Path

from taskfit.continual.methods import METHODS, Tools
from taskfit.errors import TaskfitError
from taskfit.registry import REGISTRY
from taskfit.strategies.base import read_strategy_file
from taskfit.strategies.saved import find_model_dir


def updatable(task: str) -> list[str]:
    """The strategies of a task whose saved runs a `from:` update can start from (the registry says)."""
    return [e.name for e in REGISTRY.entries(task) if e.incremental]


OLD = "old"  # the one "task" of an update: old and new data share it


def saved_model_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise TaskfitError(
            f"from: {path} does not exist; give a finished classification cell folder "
            "(runs/<name>/<strategy>/<backbone>/k<K>/seed-<s>) or its model/ folder"
        )
    try:
        return find_model_dir(p)
    except TaskfitError as exc:
        raise TaskfitError(
            f"from: {path} holds no saved model ({exc}). Give a cell folder with model/ inside, that model/ "
            "folder, or a grid with a final model"
        ) from None


def check_saved_run(from_run: str, config, where: str = "this cell") -> dict:
    """The saved run's strategy file, once it is known to fit ``config`` (same strategy and backbone)."""
    saved = read_strategy_file(saved_model_dir(from_run))
    if saved.get("members"):  # strategies.averaged: several models, and an update continues one
        raise TaskfitError(
            f"from: {from_run} is an average of {len(saved['members'])} models "
            f"({', '.join(saved.get('member_names') or [])}); an update continues one of them: give its folder, "
            f"e.g. from: {saved_model_dir(from_run) / saved['members'][0]}"
        )
    was = saved["strategy"]
    task = saved.get("task", "classification")
    if not updatable(task):
        from taskfit.registry import REGISTRY

        tasks = ", ".join(dict.fromkeys(e.task for e in REGISTRY.entries() if e.incremental))
        raise TaskfitError(f"from: {from_run} is a {task} run; updates take {tasks} runs")
    if (was["name"], was.get("backbone")) != (config.name, config.backbone):
        raise TaskfitError(
            f"from: {from_run} is a {was['name']} run on {was.get('backbone')}, but {where} is {config.name} "
            f"on {config.backbone}; an update continues the same strategy on the same backbone "
            f"(set name: {was['name']}, backbone: {was.get('backbone')})"
        )
    if config.name not in updatable(task):
        raise TaskfitError(
            f"from: updating a {config.name} run is not supported; supported: {', '.join(updatable(task))}"
        )
    return saved


def load_start(from_run: str, config, ctx):
    """The cell's strategy with the saved run's weights, ready to train on; ``ctx.labels`` become the saved
    head's label order."""
    from taskfit.registry import REGISTRY

    directory = saved_model_dir(from_run)
    saved = check_saved_run(from_run, config)
    if set(saved["labels"]) != set(ctx.labels):
        raise TaskfitError(
            f"from: the saved run's labels {saved['labels']} differ from the new data's {ctx.labels}; an update "
            "keeps the label set (for new labels, train a new run or use taskfit continual)"
        )
    ctx.labels = list(saved["labels"])
    try:
        strategy = REGISTRY.get("classification", config.name).load().load(directory, config, ctx, saved)
    except RuntimeError as exc:  # e.g. tensor size mismatch: architecture options differ from the saved run
        raise TaskfitError(
            f"from: {from_run} does not fit this cell's {config.name} settings: {exc}"
        ) from exc
    if config.name in ("lora", "ia3"):  # peft loads adapters frozen (inference mode)
        for name, p in strategy.model.encoder.named_parameters():
            if "lora_" in name or "ia3_" in name:
                p.requires_grad_(True)
    return strategy


class SingleHeadView:
    """A strategy's one-head classifier seen as a one-task continual model (what the methods call)."""

    def __init__(self, strategy) -> None:
        self.strategy = strategy
        self.task_labels = {OLD: strategy.ctx.labels}

    def __call__(self, task: str, **batch):
        return self.strategy.model(**batch)

    def eval(self):
        return self.strategy.model.eval()

    def use_task(self, task: str) -> None:
        pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.strategy.model.zero_grad(set_to_none=set_to_none)

    def shared_parameters(self) -> dict:
        return {n: p for n, p in self.strategy.model.named_parameters() if p.requires_grad}


def attach_method(strategy, method, old_train: list, seed: int) -> None:
    """Anchor the method on the saved model and the old data (weights, Fisher, replay buffer); the strategy's
    fit then adds its loss to every batch."""
    from taskfit.strategies.base import TakesExtraLoss

    if not isinstance(strategy, TakesExtraLoss):
        raise TaskfitError(f"from: a {strategy.config.name} run cannot take a continual method's loss")
    view = SingleHeadView(strategy)
    tools = Tools(strategy.tokenizer, strategy.config.max_length, strategy.device, seed)
    hooks = METHODS[method.name](method, tools)
    hooks.after_stage(view, OLD, old_train)
    strategy.extra_loss = lambda batch: hooks.extra_loss(view, {}, batch)
