"""`accelerate launch` with 2 CPU processes (gloo) ends where one process with the same global batch ends, also
when a batch does not split evenly (7 = 4 + 3: each share is weighted by its size)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_dropout_bert(tiny_bert_dir, path: Path) -> Path:
    """Dropout masks cannot match between 1 and 2 processes (each draws its own); the rest must."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(
        tiny_bert_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_CONFIG_FILE", None)
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


def _result(out: Path):
    from safetensors.torch import load_file

    [cell] = [p.parent for p in out.rglob("metrics.json")]
    metrics = json.loads((cell / "metrics.json").read_text())
    log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    probs = [json.loads(line)["probs"] for line in (cell / "predictions.jsonl").read_text().splitlines()]
    return metrics, log, probs, load_file(str(cell / "model" / "model.safetensors"))


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(
    sentiment_csv, tiny_bert_dir, tmp_path
):
    if torch.cuda.is_available():
        pytest.skip("this checks CPU processes over gloo; with a GPU accelerate would pick NCCL")
    bert = _no_dropout_bert(tiny_bert_dir, tmp_path / "bert")
    raw = {
        "name": "ddp",
        "data": {"train": str(sentiment_csv), "shots": 9, "dev_shots": 3},  # 18 examples: batches 7, 7, 4
        "seeds": [0],
        "threads_per_worker": 1,
        # fp32: the two processes' half batches round differently in bf16 (1e-4 on the loss), so the
        # bit-level comparison below holds in fp32 only
        "training": {"mixed_precision": "no"},
        "strategies": [
            {"name": "head-finetune", "backbone": str(bert), "epochs": 3, "batch_size": 7, "dropout": 0.0}
        ],
    }
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(raw))
    single = _run([sys.executable, "-m", "taskfit", "run", str(config), "--output", "one"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    launch = [
        *(sys.executable, "-m", "accelerate.commands.launch"),
        # --multi_gpu starts the processes (torchrun); without a GPU they train on the CPU over gloo
        *("--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"),
        *("--dynamo_backend", "no", "--main_process_port", str(_free_port())),
        *("-m", "taskfit", "run", str(config), "--output", "two"),
    ]
    double = _run(launch, tmp_path)
    if double.returncode != 0 and not torch.distributed.is_gloo_available():
        pytest.skip(f"torch has no gloo backend here: {double.stderr[-500:]}")
    assert double.returncode == 0, double.stderr[-5000:]
    assert "2 processes (accelerate launch)" in double.stdout
    assert "training on 2 processes (MULTI_CPU)" in double.stdout  # DDP over gloo, not two lone runs
    one, two = _result(tmp_path / "one"), _result(tmp_path / "two")
    assert two[0]["processes"] == 2 and one[0]["processes"] == 1
    for key in ("accuracy", "macro_f1", "confusion_matrix", "train_examples", "dev_examples"):
        assert one[0][key] == two[0][key], key
    assert len(one[1]) == len(two[1])
    for a, b in zip(one[1], two[1]):
        assert a.keys() == b.keys()
        for k in a:
            if k != "seconds":
                assert a[k] == pytest.approx(b[k], abs=1e-5), (a, b)
    for a, b in zip(one[2], two[2]):
        assert a == pytest.approx(b, abs=1e-5)
    assert one[3].keys() == two[3].keys()
    for k in one[3]:
        torch.testing.assert_close(one[3][k], two[3][k], atol=1e-5, rtol=1e-5, msg=k)
    # only the main process wrote: one cell folder, one database, one set of files
    assert sorted(p.name for p in (tmp_path / "two").rglob("metrics.json")) == ["metrics.json"]
    assert not list((tmp_path / "two").rglob("checkpoints"))


@pytest.mark.parametrize(
    ("name", "kind"), [("ddp", "MULTI_GPU"), ("deepspeed", "DEEPSPEED"), ("fsdp", "FSDP")]
)
def test_shipped_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    path = Path(__file__).resolve().parents[1] / "examples" / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.distributed_type.value == kind
    if name == "deepspeed":
        assert config.deepspeed_config["zero_stage"] == 2  # ZeRO-3 shards weights: refused by the loop


def _fake_accelerator(kind, **state):
    return SimpleNamespace(distributed_type=kind, is_main_process=True, state=SimpleNamespace(**state))


def test_sharded_modes_are_refused_and_cpu_fsdp_is_named_for_what_it_is(monkeypatch, capsys):
    """FSDP that shards and ZeRO-3 stop with the configs to use instead; an FSDP config on CPU processes (which
    accelerate quietly runs as DDP: checked with `accelerate launch` over gloo) trains, saying so."""
    from accelerate.utils import DistributedType

    from taskfit.errors import TaskfitError
    from taskfit.training.loop import require_whole_weights

    full_shard = SimpleNamespace(sharding_strategy="ShardingStrategy.FULL_SHARD")
    with pytest.raises(TaskfitError, match=r"FULL_SHARD is not supported yet.*ddp\.yaml"):
        require_whole_weights(_fake_accelerator(DistributedType.FSDP, fsdp_plugin=full_shard))
    no_shard = SimpleNamespace(sharding_strategy="ShardingStrategy.NO_SHARD")
    require_whole_weights(_fake_accelerator(DistributedType.FSDP, fsdp_plugin=no_shard))
    zero3 = SimpleNamespace(zero_stage=3)
    with pytest.raises(TaskfitError, match="use zero_stage 1 or 2"):
        require_whole_weights(_fake_accelerator(DistributedType.DEEPSPEED, deepspeed_plugin=zero3))
    require_whole_weights(
        _fake_accelerator(DistributedType.DEEPSPEED, deepspeed_plugin=SimpleNamespace(zero_stage=2))
    )
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    require_whole_weights(_fake_accelerator(DistributedType.MULTI_CPU))
    assert "asks for FSDP, but accelerate runs it as MULTI_CPU" in capsys.readouterr().out
