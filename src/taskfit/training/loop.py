"""The training loop every gradient-based strategy shares: AdamW with linear warm-up and decay, gradient
clipping and accumulation, one dev evaluation per epoch, early stopping, and the best epoch restored at the end.

A strategy supplies what differs: the loss of a batch, the dev metric, and what to snapshot. The loop runs on
``accelerate``: one process, or several launched by ``accelerate launch`` (DDP, FSDP, DeepSpeed), each taking
its share of every global batch. It checkpoints (``training.checkpoint``) periodically and on SIGTERM/SIGINT,
and resumes from the newest good checkpoint with the same weights, optimiser, schedule, RNG and data order.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from taskfit.config import AdversarialConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.training.adversarial import EmbeddingPerturbation, adversarial_step, input_embeddings
from taskfit.training.checkpoint import latest_good, load_checkpoint, save_checkpoint
from taskfit.training.distributed import RunOptions, make_accelerator
from taskfit.training.dropout import cheap_dropout_masks, uses_cheap_masks
from taskfit.training.precision import frozen_linear_casts


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int
    warmup_ratio: float
    max_grad_norm: float
    patience: int
    seed: int
    grad_accumulation: int = 1  # batches per optimiser step
    metric: str = "dev_accuracy"  # what the dev callback measures, as logged
    higher_is_better: bool = True
    run: RunOptions = field(default_factory=RunOptions)  # checkpoints, resume, precision, trackers
    adversarial: AdversarialConfig | None = None  # FGM/PGD on the embedding output at every step


def settings_for(config, ctx, **extra) -> LoopSettings:
    """The loop settings every strategy config carries (epochs, batch size, warm-up, clipping, patience)."""
    return LoopSettings(
        config.epochs,
        config.batch_size,
        config.warmup_ratio,
        config.max_grad_norm,
        config.patience,
        ctx.seed,
        run=ctx.run,
        adversarial=getattr(config, "adversarial", None),
        **extra,
    )


def trainable_state(module) -> dict:
    """A copy of the parameters that train (what best-epoch restore needs)."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


class TrainingInterrupted(TaskfitError):
    """SIGTERM/SIGINT during training: a checkpoint was written and the run stopped."""


class _BatchLoss(nn.Module):
    """What accelerate wraps (DDP, FSDP, autocast): ``forward(indices)`` is the strategy's loss on those training
    examples. Going through this module's forward lets the wrapper see every step whatever the strategy's own
    forward looks like (prompt scoring calls the decoder stack directly). Indices, not examples: DDP copies
    dataclass inputs, and a strategy may look examples up by identity."""

    def __init__(
        self, model: nn.Module, batch_loss: Callable[[list[Example]], torch.Tensor], train: list
    ) -> None:
        super().__init__()
        self.model = model
        self._loss, self._train = batch_loss, train

    def forward(self, indices: list[int]) -> torch.Tensor:
        return self._loss([self._train[i] for i in indices])


@contextlib.contextmanager
def stop_requests(active: bool) -> Iterator[dict]:
    """While active, SIGTERM/SIGINT only set a flag: the loop checkpoints at the next step and stops. The same
    signal again acts at once (the handlers in place before are back); the other one is ignored, since Ctrl-C
    reaches a grid's cells both from the terminal and as the grid's SIGTERM."""
    flag: dict = {"signal": None}
    if not active or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, frame) -> None:
        name = signal.Signals(signum).name
        if flag["signal"] == name:
            for s, h in previous.items():
                signal.signal(s, h)
            signal.raise_signal(signum)
        elif flag["signal"] is None:
            flag["signal"] = name

    for s in previous:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def fit_epochs(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    batch_loss: Callable[[list[Example]], torch.Tensor],
    train: list[Example],
    dev: list[Example],
    dev_accuracy: Callable[[list[Example]], float],
    snapshot: Callable[[], dict[str, torch.Tensor]],
    restore: Callable[[dict[str, torch.Tensor]], None],
    set_train_mode: Callable[[], None],
    settings: LoopSettings,
    log: list[dict],
    advance: Callable[[int], None] = lambda n: None,
    evaluate_untrained: bool = False,
    make_batches: Callable[[torch.Generator], list[list[int]]] | None = None,
) -> None:
    """Train ``model`` (whose trainable parameters ``optimizer`` holds) for up to ``settings.epochs``; with a dev
    set, stop after ``patience`` epochs without a better dev score and restore the best snapshot.
    ``evaluate_untrained`` makes the starting model epoch 0, so that training is kept only when it beats it
    (prompt-based fine-tuning starts from a working zero-shot model). ``make_batches`` orders an epoch's
    examples into batches of indices (default: a seeded shuffle).

    With several processes every one builds the same global batches from the seeded generator and takes
    ``batch[rank::world]``; its loss is weighted by its share, so the averaged gradient is the gradient of the
    global batch's mean loss, as in one process. Every process evaluates the whole dev set (few-shot dev sets
    are small): all reach the same early-stopping decision without exchanging anything, and no dev example is
    dropped or counted twice."""
    from transformers import get_linear_schedule_with_warmup

    s, run = settings, settings.run
    device = next(model.parameters()).device
    accelerator = make_accelerator(run, device)
    require_whole_weights(accelerator)
    rank, world = accelerator.process_index, accelerator.num_processes
    if world > 1 and accelerator.is_main_process:
        print(f"training on {world} processes ({accelerator.distributed_type.value})", flush=True)
    generator = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)  # dropout masks
    make_batches = make_batches or (
        lambda g: [b.tolist() for b in torch.randperm(len(train), generator=g).split(s.batch_size)]
    )
    steps_per_epoch = len(make_batches(torch.Generator().manual_seed(s.seed)))
    total = -(-steps_per_epoch // s.grad_accumulation) * s.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total), total)
    net, optimizer, scheduler = accelerator.prepare(
        _BatchLoss(model, batch_loss, train), optimizer, scheduler
    )
    params = [p for p in model.parameters() if p.requires_grad]
    perturbation = EmbeddingPerturbation(input_embeddings(model)) if s.adversarial else None
    sign = 1.0 if s.higher_is_better else -1.0  # compare as "higher is better"
    # Where training stands: the next (epoch, batch) to run, and the generator's state when that epoch began.
    state = {"epoch": 1, "step": 0, "optimizer_steps": 0, "best": -math.inf, "best_epoch": 0, "stale": 0}
    state["losses"], best_state, resumed_generator = [], None, None
    checkpoints = run.checkpoint_dir
    resumed = latest_good(checkpoints, run.fingerprint) if checkpoints and run.resume else None
    if resumed is not None:
        saved, tensors = load_checkpoint(accelerator, resumed)
        state.update(saved["loop"])
        state["best"] = -math.inf if state["best"] is None else state["best"]
        log[:] = saved["log"]
        resumed_generator = tensors["generator"]
        best = {k.removeprefix("best/"): v for k, v in tensors.items() if k.startswith("best/")}
        best_state = best if saved["has_best"] else None
        advance((state["epoch"] - 1) * steps_per_epoch + state["step"])
        print(f"resumed from {resumed} (epoch {state['epoch']}, batch {state['step']})", flush=True)
    elif dev and evaluate_untrained:
        value = dev_accuracy(dev)
        state["best"], best_state = sign * value, snapshot()
        log.append({"epoch": 0, s.metric: value})

    def save(reason: str) -> None:
        flush()
        loop = {**state, "best": None if state["best"] == -math.inf else state["best"]}
        payload = {"fingerprint": run.fingerprint, "reason": reason, "loop": loop, "log": log}
        payload["has_best"] = best_state is not None
        tensors = {"generator": epoch_start, **{f"best/{k}": v for k, v in (best_state or {}).items()}}
        save_checkpoint(
            accelerator, checkpoints, state["optimizer_steps"], payload, tensors, run.keep_checkpoints
        )

    pending: list[torch.Tensor] = []  # this epoch's weighted batch losses not yet in state["losses"]

    def flush() -> None:
        if pending:
            state["losses"] += torch.stack(pending).float().tolist()
            pending.clear()

    if run.report_to:
        _init_trackers(accelerator, run)
    last_save = time.monotonic()
    cheap_masks = cheap_dropout_masks(model, uses_cheap_masks(run.fast_dropout, device))
    frozen_casts = frozen_linear_casts(model, device.type)
    with stop_requests(checkpoints is not None) as stop, cheap_masks:
        for epoch in range(state["epoch"], s.epochs + 1):
            set_train_mode()
            started = time.perf_counter()
            if state["step"] == 0:
                epoch_start = generator.get_state()
            else:  # resumed inside this epoch: the same batches again, the done ones skipped
                epoch_start = resumed_generator
                generator.set_state(epoch_start)
            batches = make_batches(generator)
            optimizer.zero_grad(set_to_none=True)
            for step in range(state["step"] + 1, len(batches) + 1):
                idx = batches[step - 1]
                share, weight = idx[rank::world], len(idx[rank::world]) * world / len(idx)
                if not share:  # fewer examples than processes: take part in the step, add nothing
                    share, weight = idx[:1], 0.0
                boundary = step % s.grad_accumulation == 0 or step == len(batches)
                with contextlib.nullcontext() if boundary else accelerator.no_sync(net), frozen_casts():
                    scale = weight / s.grad_accumulation
                    if perturbation is None:
                        loss = net(share)
                        accelerator.backward(loss * scale)
                    else:  # clean + adversarial gradients, accumulated before the step
                        loss = adversarial_step(
                            functools.partial(net, share),
                            lambda value, scale=scale: accelerator.backward(value * scale),
                            perturbation,
                            s.adversarial,
                            no_sync=lambda: accelerator.no_sync(net),
                        )
                pending.append(loss.detach() * weight)  # read once per epoch: no host sync per step
                advance(1)
                if not boundary:
                    continue
                accelerator.clip_grad_norm_(params, s.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["optimizer_steps"] += 1
                state["step"] = step
                if checkpoints is None:
                    continue
                every = run.checkpoint_every_steps
                flags = torch.tensor(  # on the host unless processes must agree (no device sync per step)
                    [
                        stop["signal"] is not None,
                        bool(run.checkpoint_every_minutes)
                        and time.monotonic() - last_save > 60 * (run.checkpoint_every_minutes or 0),
                    ],
                    dtype=torch.float,
                )
                if world > 1:  # every process must agree, or the collectives of a save would hang
                    flags = accelerator.reduce(flags.to(accelerator.device), "max").cpu()
                if flags.any() or (every and state["optimizer_steps"] % every == 0):
                    save("signal" if flags[0] else "periodic")
                    last_save = time.monotonic()
                if flags[0]:
                    raise TrainingInterrupted(
                        f"training stopped by {stop['signal'] or 'a signal'} at epoch {epoch}, batch {step}; "
                        f"checkpoint in {checkpoints}: rerun with --resume to continue from it"
                    )
            flush()
            losses = torch.tensor(state["losses"], dtype=torch.float64, device=accelerator.device)
            if world > 1:
                losses = accelerator.reduce(losses, "sum") / world
            record = {
                "epoch": epoch,
                "train_loss": losses.mean().item(),
                "seconds": time.perf_counter() - started,
            }
            if dev:
                record[s.metric] = dev_accuracy(dev)
                if sign * record[s.metric] > state["best"]:
                    state.update(best=sign * record[s.metric], best_epoch=epoch, stale=0)
                    best_state = snapshot()
                else:
                    state["stale"] += 1
            log.append(record)
            if run.report_to:
                accelerator.log({k: v for k, v in record.items() if k != "epoch"}, step=epoch)
            state.update(epoch=epoch + 1, step=0, losses=[])
            told_to_stop = run.epoch_end is not None and run.epoch_end(epoch)
            if (dev and state["stale"] >= s.patience) or told_to_stop:
                advance((s.epochs - epoch) * steps_per_epoch)
                break
    if best_state is not None:
        restore(best_state)
        log.append({"event": "restored_best", "epoch": state["best_epoch"], s.metric: sign * state["best"]})
    if run.report_to:
        accelerator.end_training()
    accelerator.free_memory()


def fit_whole_model(strategy, optimizer, batch_loss, train: list, dev: list, dev_score, metric: str) -> None:
    """``fit_epochs`` wired the way head-finetune and its NER/QA/relation variants share: the best epoch is the
    whole state dict of ``strategy.model``, the loop settings come from ``strategy.config``, the log and
    progress from the strategy."""
    c, model = strategy.config, strategy.model
    fit_epochs(
        optimizer,
        model,
        batch_loss,
        train,
        dev,
        dev_accuracy=dev_score,
        snapshot=lambda: {k: v.detach().clone() for k, v in model.state_dict().items()},
        restore=model.load_state_dict,
        set_train_mode=model.train,
        settings=settings_for(c, strategy.ctx, metric=metric),
        log=strategy.log,
        advance=strategy.ctx.advance(f"{c.run_id} train", -(-len(train) // c.batch_size) * c.epochs),
    )


def require_whole_weights(accelerator) -> None:
    """Dev evaluation, best-epoch snapshots, test predictions and saving call the strategy's own model outside
    accelerate's wrapper, so every process must hold whole weights: DDP and DeepSpeed ZeRO-1/2 do; FSDP and
    ZeRO-3 shard them, which would silently evaluate shards. Refuse those instead."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    asked_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if asked_fsdp and kind != DistributedType.FSDP and accelerator.is_main_process:
        # accelerate turns FSDP on for accelerators only; on CPU processes it quietly runs plain DDP
        print(
            f"note: the accelerate config asks for FSDP, but accelerate runs it as {kind.value} here (it "
            "shards only on GPUs/accelerators): every process holds whole weights, as with "
            "examples/accelerate/ddp.yaml",
            flush=True,
        )
    if kind == DistributedType.FSDP:
        strategy = str(getattr(accelerator.state.fsdp_plugin, "sharding_strategy", ""))
        if "NO_SHARD" not in strategy:
            raise TaskfitError(
                f"FSDP with {strategy or 'parameter sharding'} is not supported yet: taskfit evaluates and saves "
                "through the unwrapped model, which needs whole weights on every process. Use DDP "
                "(examples/accelerate/ddp.yaml) or DeepSpeed ZeRO-2 (examples/accelerate/deepspeed.yaml)."
            )
    if kind == DistributedType.DEEPSPEED and accelerator.state.deepspeed_plugin.zero_stage == 3:
        raise TaskfitError(
            "DeepSpeed ZeRO-3 shards the weights, and taskfit evaluates and saves through the unwrapped model; "
            "use zero_stage 1 or 2 (examples/accelerate/deepspeed.yaml)."
        )


def _init_trackers(accelerator, run: RunOptions) -> None:
    """TensorBoard writes under the cell's tracking folder; MLflow goes where MLFLOW_TRACKING_URI says, else to a
    local SQLite store in that folder (MLflow 3 retired its plain-file store); nothing is sent anywhere unless
    the user points it somewhere."""
    if "mlflow" in run.report_to and not os.environ.get("MLFLOW_TRACKING_URI") and run.tracking_dir:
        import mlflow

        run.tracking_dir.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{(run.tracking_dir / 'mlflow.db').resolve()}")
    accelerator.init_trackers(run.run_name.replace("/", "_"))


def accuracy(predicted: list[str], examples: list[Example]) -> float:
    return sum(p == e.label for p, e in zip(predicted, examples)) / len(examples)
