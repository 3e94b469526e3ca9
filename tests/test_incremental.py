"""Incremental update (from: RUN_DIR): a head-finetune run on old data is fine-tuned on new data with the same
labels but another rule (old: sentiment words decide; new: question vs entity words, sentiment words as noise),
so naive fine-tuning forgets the old rule and l2 / replay forget less."""

from __future__ import annotations

import json

import pytest
import yaml

from taskfit.cli import main
from taskfit.compare import run_experiment
from taskfit.compare.plan import check_update
from taskfit.config import validate_config
from taskfit.errors import TaskfitError
from tests.conftest import write_csv
from tests.test_continual import _rows


def _data(tmp_path, task: str, seed: int) -> dict:
    files = {}
    for s, (split, n) in enumerate((("train", 64), ("dev", 16), ("test", 60))):
        rows = [
            {**r, "label": {"question": "pos", "entity": "neg"}.get(r["label"], r["label"])}
            for r in _rows(task, n, seed + s)
        ]
        files[split] = str(write_csv(tmp_path / f"{task}-{split}.csv", rows))
    return {**files, "shots": 16}


def _strategy(backbone) -> dict:
    return {
        "name": "head-finetune",
        "backbone": str(backbone),
        "lr": 1e-2,
        "head_lr": 1e-2,
        "epochs": 8,
        "patience": 100,
        "dropout": 0.0,
        "freeze_embeddings": False,  # a random tiny BERT: its embeddings must learn the toy vocabulary
    }


@pytest.fixture(scope="module")
def old_run(tmp_path_factory, tiny_bert_dir):
    tmp = tmp_path_factory.mktemp("incremental")
    raw = {
        "name": "old",
        "data": _data(tmp, "sentiment", 0),
        "strategies": [_strategy(tiny_bert_dir)],
        "device": "cpu",
    }
    run_experiment(validate_config(raw), tmp / "old", isolate=False)
    return tmp, tmp / "old" / "head-finetune" / tiny_bert_dir.name / "k16" / "seed-0"


def _update(tmp, cell, backbone, method, out):
    raw = {
        "name": "new",
        "data": _data(tmp, "topic", 50),
        "strategies": [_strategy(backbone)],
        "device": "cpu",
        "from": str(cell),
        "old_data": _data(tmp, "sentiment", 0),
        "continual": method,
        # the toy's forgetting margins (60 test texts, a random tiny BERT) were set on torch's own dropout
        # stream; with the cheap masks' stream the naive update forgot 0.117 of the old rule instead of 0.15+
        "training": {"fast_dropout": "off"},
    }
    run_experiment(validate_config(raw), tmp / out, isolate=False)
    metrics = json.loads((tmp / out / cell.relative_to(tmp / "old") / "metrics.json").read_text())
    return metrics["incremental"]


def test_update_reports_old_and_new_before_and_after(old_run, tiny_bert_dir):
    tmp, cell = old_run
    naive = _update(tmp, cell, tiny_bert_dir, {"name": "naive"}, "naive")
    assert naive["before"]["old_data"] >= 0.9  # starts from the saved model
    assert naive["after"]["new_data"] >= naive["before"]["new_data"] + 0.2  # learns the new rule
    assert naive["after"]["old_data"] <= naive["before"]["old_data"] - 0.15  # and forgets the old one
    assert "update of" in (tmp / "naive" / "report.md").read_text()
    for method in ({"name": "l2", "strength": 10.0}, {"name": "replay", "buffer_size": 32}):
        kept = _update(tmp, cell, tiny_bert_dir, method, method["name"])
        assert kept["after"]["old_data"] >= naive["after"]["old_data"] + 0.05, method
        assert kept["after"]["new_data"] >= 0.7, method


def test_update_errors(old_run, tiny_bert_dir, tmp_path, capsys):
    tmp, cell = old_run
    base = {"data": _data(tmp, "topic", 50), "device": "cpu"}
    # the saved run is read when the grid is planned (check_update, called by validate_plan and taskfit validate)
    with pytest.raises(TaskfitError, match="nope does not exist; give a finished classification cell folder"):
        check_update(
            validate_config({**base, "strategies": [_strategy(tiny_bert_dir)], "from": str(tmp / "nope")})
        )
    with pytest.raises(TaskfitError, match="holds no saved model"):
        check_update(validate_config({**base, "strategies": [_strategy(tiny_bert_dir)], "from": str(tmp)}))
    lora = {"name": "lora", "backbone": str(tiny_bert_dir), "epochs": 1}
    with pytest.raises(TaskfitError, match="is a head-finetune run on .*, but strategies.0 is lora"):
        check_update(validate_config({**base, "strategies": [lora], "from": str(cell)}))
    with pytest.raises(TaskfitError, match="is a head-finetune run on .*, but strategies.0 is lora"):
        run_experiment(
            validate_config({**base, "strategies": [lora], "from": str(cell)}), tmp_path, isolate=False
        )
    config_file = tmp_path / "update.yaml"
    config_file.write_text(
        yaml.safe_dump({**base, "strategies": [lora], "from": str(cell)}), encoding="utf-8"
    )
    assert main(["validate", str(config_file)]) == 2  # taskfit validate reads the saved run too
    assert "but strategies.0 is lora" in capsys.readouterr().err
    with pytest.raises(TaskfitError, match="ewc needs old_data"):
        validate_config(
            {
                **base,
                "strategies": [_strategy(tiny_bert_dir)],
                "from": str(cell),
                "continual": {"name": "ewc"},
            }
        )
    with pytest.raises(TaskfitError, match="only apply to an incremental update"):
        validate_config({**base, "strategies": [_strategy(tiny_bert_dir)], "old_data": base["data"]})
