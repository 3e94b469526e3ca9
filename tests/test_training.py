"""The training loop's checkpoints: resumed runs end exactly where uninterrupted ones do (after SIGTERM, after
SIGKILL, from the previous checkpoint when the newest is damaged); trackers; the training: config block."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from taskfit.config import HeadFinetuneConfig, LoraStrategyConfig, validate_config
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.strategies import Context, build_strategy
from taskfit.training.checkpoint import STOP_AT_ENV, checkpoint_folders, latest_good, verify
from taskfit.training.distributed import RunOptions
from taskfit.training.loop import TrainingInterrupted

from . import processes
from .test_strategies import LABELS, toy

SRC = str(Path(__file__).resolve().parents[1] / "src")


def head(bert, **extra):
    settings = {"epochs": 4, "batch_size": 4, "patience": 10, **extra}
    return HeadFinetuneConfig(name="head-finetune", backbone=str(bert), **settings)


def train(config, run: RunOptions, progress=None, dev=True):
    """Fit on 16 examples (4 batches per epoch) with dropout on; return the trained weights and the log.
    Without a dev set the weights are the last step's (no best epoch restored)."""
    ctx = Context(LABELS, None, seed=3, run=run, progress=progress)
    strategy = build_strategy(config, ctx)
    strategy.fit(toy(16), toy(6, offset=100) if dev else [])
    weights = {k: v.clone() for k, v in strategy.model.state_dict().items()}
    log = [{k: v for k, v in r.items() if k != "seconds"} for r in strategy.log]
    return weights, log


def assert_same_run(a, b):
    (wa, la), (wb, lb) = a, b
    assert la == lb
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def raise_signal_after(n_batches: int, sig=signal.SIGTERM):
    """A progress callback that sends ``sig`` to this process after ``n_batches`` training batches."""
    seen = [0]

    def progress(desc, total):
        def advance(n):
            if not desc.endswith(" train"):
                return
            seen[0] += n
            if seen[0] == n_batches and n == 1:
                signal.raise_signal(sig)

        return advance

    return progress


@pytest.mark.parametrize(("sig", "dev"), [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_signal_checkpoints_then_resume_ends_like_an_uninterrupted_run(tiny_bert_dir, tmp_path, sig, dev):
    config = head(tiny_bert_dir)
    reference = train(config, RunOptions(), dev=dev)
    run = RunOptions(checkpoint_dir=tmp_path / "ckpt", fingerprint="k")
    with pytest.raises(TrainingInterrupted, match="rerun with --resume"):
        train(config, run, progress=raise_signal_after(6, sig), dev=dev)  # mid-epoch 2
    assert [p.name for p in checkpoint_folders(tmp_path / "ckpt")] == ["step-6"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back
    resumed = train(
        config, RunOptions(checkpoint_dir=tmp_path / "ckpt", fingerprint="k", resume=True), dev=dev
    )
    assert_same_run(resumed, reference)


def test_a_damaged_or_half_written_checkpoint_falls_back_to_the_previous_one(tiny_bert_dir, tmp_path):
    config = head(tiny_bert_dir, epochs=2)
    reference = train(config, RunOptions())
    root = tmp_path / "ckpt"
    run = RunOptions(checkpoint_dir=root, fingerprint="k", checkpoint_every_steps=1, keep_checkpoints=3)
    train(config, run)
    newest, previous, oldest = checkpoint_folders(root)
    assert [p.name for p in (newest, previous, oldest)] == ["step-8", "step-7", "step-6"]
    assert all(verify(p) is None for p in (newest, previous, oldest))
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    (previous / "manifest.json").unlink()  # as if killed before the manifest
    with pytest.warns(UserWarning) as caught:
        assert latest_good(root, "k") == oldest
    messages = " ".join(str(w.message) for w in caught)
    assert "step-8 is unusable: model.safetensors has" in messages
    assert "step-7 is unusable: no manifest: half-written" in messages
    assert checkpoint_folders(root) == [oldest]  # the bad ones are gone
    with pytest.warns(UserWarning, match="written for another configuration"):
        assert latest_good(root, "other-key") is None
    # a flipped byte of the same size is caught by the hash
    train(config, run)
    newest = checkpoint_folders(root)[0]
    raw = bytearray((newest / "loop_state.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (newest / "loop_state.safetensors").write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="does not match its sha256"):
        resumed = train(config, RunOptions(checkpoint_dir=root, fingerprint="k", resume=True))
    assert_same_run(resumed, reference)


def test_resume_of_a_peft_strategy(tiny_bert_dir, tmp_path):
    """A peft strategy (only adapters and head train) resumed from a mid-epoch checkpoint."""
    config = LoraStrategyConfig(
        name="lora", backbone=str(tiny_bert_dir), epochs=3, batch_size=2, patience=10, r=2
    )
    reference = train(config, RunOptions())
    run = RunOptions(checkpoint_dir=tmp_path / "c", fingerprint="k", checkpoint_every_steps=5)
    with pytest.raises(TrainingInterrupted):
        train(config, run, progress=raise_signal_after(13))
    resumed = train(config, RunOptions(checkpoint_dir=tmp_path / "c", fingerprint="k", resume=True))
    assert_same_run(resumed, reference)


def test_bf16_autocast_trains_and_keeps_fp32_weights(tiny_bert_dir):
    weights, log = train(head(tiny_bert_dir, epochs=1), RunOptions(mixed_precision="bf16"))
    assert log[0]["train_loss"] > 0 and all(v.dtype == torch.float32 for v in weights.values())
    full = train(head(tiny_bert_dir, epochs=1), RunOptions())  # one process may switch precision per run
    assert full[1][0]["train_loss"] != log[0]["train_loss"]


def test_resume_with_gradient_accumulation_in_generation_sft(tiny_llama_dir, tmp_path):
    from taskfit.config import GenerationLoraConfig

    config = GenerationLoraConfig(
        name="lora", backbone=str(tiny_llama_dir), epochs=2, batch_size=2, grad_accumulation=3, r=2
    )
    pairs = [Example(text=f"good movie {i}", target=f"fun {i}") for i in range(14)]

    def sft(run, progress=None):
        torch.manual_seed(0)  # the LoRA init draws from the global RNG (only head-based strategies seed it)
        strategy = build_strategy(config, Context([], None, seed=1, run=run, progress=progress))
        strategy.fit(pairs, pairs[:4])
        weights = {k: v.clone() for k, v in strategy.net.named_parameters() if v.requires_grad}
        return weights, [{k: v for k, v in r.items() if k != "seconds"} for r in strategy.log]

    reference = sft(RunOptions())
    run = RunOptions(checkpoint_dir=tmp_path / "c", fingerprint="k")
    with pytest.raises(TrainingInterrupted):
        sft(run, progress=raise_signal_after(4))  # 7 batches an epoch: steps after batches 3, 6, 7
    assert [p.name for p in checkpoint_folders(tmp_path / "c")] == ["step-2"]  # at the next optimiser step
    assert_same_run(sft(RunOptions(checkpoint_dir=tmp_path / "c", fingerprint="k", resume=True)), reference)


def test_tensorboard_logs_each_epoch_into_the_tracking_folder(tiny_bert_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(head(tiny_bert_dir, epochs=2), RunOptions(report_to=["tensorboard"], tracking_dir=tmp_path / "tb"))
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {"train_loss", "dev_accuracy"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]


def test_mlflow_logs_to_a_local_store_in_the_tracking_folder(tiny_bert_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = RunOptions(report_to=["mlflow"], tracking_dir=tmp_path / "tr", run_name="head/bert/k8/seed-0")
    train(head(tiny_bert_dir, epochs=2), run)
    client = MlflowClient(f"sqlite:///{tmp_path / 'tr' / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "head_bert_k8_seed-0"]
    [logged] = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(logged.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]


def test_training_block_is_checked_and_only_precision_changes_cell_keys(sentiment_csv, tiny_bert_dir):
    from taskfit.compare.plan import plan_cells

    raw = {
        "data": {"train": str(sentiment_csv), "shots": 2},
        "strategies": [{"name": "head-finetune", "backbone": str(tiny_bert_dir)}],
    }
    plain = validate_config({**raw, "training": {"mixed_precision": "no"}})
    assert plain.training.report_to == [] and validate_config(raw).training.mixed_precision == "auto"
    with pytest.raises(TaskfitError, match="training.report_too"):
        validate_config({**raw, "training": {"report_too": ["tensorboard"]}})
    with pytest.raises(TaskfitError):
        validate_config({**raw, "training": {"report_to": ["wandb"]}})
    key = plan_cells(plain, "f")[0].key
    tracked = validate_config(
        {
            **raw,
            "training": {"report_to": ["tensorboard"], "checkpoint_every_steps": 5, "mixed_precision": "no"},
        }
    )
    assert plan_cells(tracked, "f")[0].key == key
    assert plan_cells(validate_config({**raw, "training": {"mixed_precision": "bf16"}}), "f")[0].key != key


def _cell_config(tmp_path, train_csv, bert, **training):
    raw = {
        "name": "resume",
        "data": {"train": str(train_csv), "shots": 8, "dev_shots": 4},
        "seeds": [0],
        "threads_per_worker": 1,  # the same float reductions in every run
        "strategies": [
            {
                "name": "head-finetune",
                "backbone": str(bert),
                "epochs": 30,
                "patience": 30,  # no early stop: 120 optimiser steps, time to kill mid-run
                "batch_size": 4,
                "lr": 1e-3,
            }
        ],
        "training": training,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _taskfit(*args, extra_env: dict | None = None, **kw):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    env.pop(STOP_AT_ENV, None)  # only the run that asks for it stops itself
    env.update(extra_env or {})
    return subprocess.Popen([sys.executable, "-m", "taskfit", *args], env=env, **kw)


def _read(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _cell_result(out: Path):
    from safetensors.torch import load_file

    cell = out / "head-finetune" / Path(*[p for p in sorted(out.rglob("metrics.json"))[0].parent.parts[-3:]])
    metrics = json.loads((cell / "metrics.json").read_text())
    scores = {k: metrics[k] for k in ("accuracy", "macro_f1", "confusion_matrix")}
    log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    log = [{k: v for k, v in r.items() if k != "seconds"} for r in log]
    predictions = (cell / "predictions.jsonl").read_text()
    return scores, log, predictions, load_file(str(cell / "model" / "model.safetensors")), cell


def test_sigkill_at_a_random_step_then_resume_matches_an_uninterrupted_run(
    sentiment_csv, tiny_bert_dir, tmp_path
):
    config = _cell_config(tmp_path, sentiment_csv, tiny_bert_dir, checkpoint_every_steps=2)
    done = _taskfit("run", str(config), "--output", str(tmp_path / "whole"), stdout=subprocess.DEVNULL)
    target = random.Random().randrange(2, 31, 2)  # 120 optimiser steps in all; checkpoints at even steps
    # the run stops itself once checkpoint `target` is in place: the kill lands at that exact step however
    # slow or loaded the machine is (no race between polling the folder and the run finishing)
    err = (tmp_path / "killed.err").open("w")  # a file, not a pipe nobody reads (a full pipe blocks the run)
    killed = _taskfit(
        "run",
        str(config),
        "--output",
        str(tmp_path / "killed"),
        stdout=subprocess.DEVNULL,
        stderr=err,
        extra_env={STOP_AT_ENV: str(target)},
    )

    def stopped_at_target():
        if killed.poll() is not None:
            raise AssertionError(
                f"the run ended before checkpoint {target}: {_read(tmp_path / 'killed.err')}"
            )
        return next((pid for pid in processes.tree(killed.pid) if processes.state(pid) == "T"), None)

    # no race left to win: poll gently (each look runs pgrep) and leave the CPU to the run
    processes.wait_until(stopped_at_target, f"the run to stop at checkpoint {target}", poll_s=0.2)
    # every process of the tree (grid, fork server, the stopped cell) dies as if the machine went down
    pids = processes.freeze(killed.pid)
    processes.signal_all(pids, signal.SIGKILL)
    killed.wait()
    err.close()
    assert done.wait(timeout=processes.FAILSAFE_S) == 0
    assert not processes.find(tmp_path / "killed", "metrics.json"), "killed too late: the run had finished"
    steps = [int(p.name[5:]) for p in processes.find(tmp_path / "killed", "step-*", dirs=True)]
    assert max(steps) == target, steps
    resumed = _taskfit(
        "run",
        str(config),
        "--output",
        str(tmp_path / "killed"),
        "--resume",
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = resumed.communicate(timeout=processes.FAILSAFE_S)
    assert resumed.returncode == 0, err
    a, b = _cell_result(tmp_path / "whole"), _cell_result(tmp_path / "killed")
    assert "resumed from" in (b[4] / "log.txt").read_text()
    assert a[:3] == b[:3]  # metrics, per-epoch losses and dev scores, test predictions with probabilities
    for k in a[3]:
        assert torch.equal(a[3][k], b[3][k]), k
    assert not (b[4] / "checkpoints").exists()  # a finished cell keeps its model, not its checkpoints


def test_ctrl_c_stops_an_in_process_grid_and_resume_finishes_it(
    sentiment_csv, tiny_bert_dir, tmp_path, monkeypatch, capsys
):
    from taskfit.compare import run_experiment

    raw = {
        "name": "stop",
        "data": {"train": str(sentiment_csv), "shots": 4, "dev_shots": 2},
        "seeds": [0, 1],
        "strategies": [
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 3, "batch_size": 2}
        ],
    }
    reference = run_experiment(validate_config(raw), tmp_path / "whole", isolate=False)
    monkeypatch.setattr("taskfit.progress.make_progress", lambda stream: raise_signal_after(5, signal.SIGINT))
    with pytest.raises(TrainingInterrupted):
        run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    cells = tmp_path / "out" / "head-finetune" / "tiny-bert0" / "k4"
    assert "rerun with --resume" in (cells / "seed-0" / "error.txt").read_text()
    assert (cells / "seed-0" / "checkpoints" / "step-5").is_dir()
    assert not (cells / "seed-1").exists()  # the grid stopped with the cell
    monkeypatch.undo()
    capsys.readouterr()
    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False, resume=True)
    assert "resumed from" in capsys.readouterr().out
    assert [c["status"] for c in summary["cells"]] == ["ok", "ok"]

    def scores(s):
        return [(c["cell"], c["accuracy"], c["macro_f1"]) for c in s["cells"]]

    assert scores(summary) == scores(reference)
    for seed in (0, 1):
        a, b = (
            p / "head-finetune" / "tiny-bert0" / "k4" / f"seed-{seed}"
            for p in (tmp_path / "whole", tmp_path / "out")
        )
        assert (a / "predictions.jsonl").read_text() == (b / "predictions.jsonl").read_text()
        assert (a / "model" / "model.safetensors").read_bytes() == (
            b / "model" / "model.safetensors"
        ).read_bytes()
