"""Cell keys and the typed cell spec (compare/cell.py)."""

from __future__ import annotations

import json

import pytest

from taskfit.compare.cell import CellSpec
from taskfit.compare.plan import plan_cells, resolve_prompt
from taskfit.config import DataConfig, LoraStrategyConfig, NerLoraConfig, TrainingConfig, validate_config

FINGERPRINT = "f" * 64
CONFIGS = {
    "classification": {
        "name": "pin",
        "data": {"dataset": "mr", "shots": [8, 16]},
        "seeds": [0, 1],
        "strategies": [
            {"name": "head-finetune", "backbone": "minilm"},
            {"name": "zero-shot", "backbone": "smollm2"},
            {"name": "lora", "backbone": "minilm", "id": "lora-r4", "r": 4},
        ],
    },
    "ner": {
        "name": "pin",
        "task": "ner",
        "data": {"dataset": "peoples-daily-ner", "shots": 16},
        "strategies": [{"name": "lora", "backbone": "minilm"}, {"name": "zero-shot", "backbone": "smollm2"}],
    },
    "generation": {
        "name": "pin",
        "task": "generation",
        "data": {"dataset": "movie-dialog", "shots": 32},
        "strategies": [{"name": "lora", "backbone": "smollm2"}],
    },
}
# fp32 and torch's dropout masks pinned: mixed_precision auto is bf16 on a machine with native bf16, and
# fast_dropout auto applies on a CPU only; both then (deliberately) key the cells apart (tests/test_precision.py,
# tests/test_dropout.py). These pins must not depend on the machine.
for _raw in CONFIGS.values():
    _raw["training"] = {"mixed_precision": "no", "fast_dropout": "off"}
# Computed by plan_cells on main before the task objects and CellSpec existed (commit f959d41): finished
# cells of existing run folders are recognised by these keys, so they must not change by accident. Changed on
# purpose once: head-finetune's freeze_embeddings default became true (bf2fe9d), a different computation,
# so its cells are new cells (before: 89e2993c3e82b51b, c631126e5e11d61d, 25473ec8620ce105,
# 51785ff91476aee0). Changed on purpose again for every classification cell: the decision correction (issue
# 36, compare.correction) changes a label cell's labels and scores, so cells saved before it run again
# (before: 020465f5a2b226ae, 92c99f81594d2baf, d6387af2a54b33a1, 619158d3a3783736, 5d7b35287c65a8d0,
# 66a8ae1d8dfe92a2, 77ea9fc9f0e2fab7, aea9eeff1577caac, d21528ec44fff824); and once more when it took a
# temperature (CORRECTION_VERSION 2).
PINNED = {
    "classification": {
        "head-finetune/minilm/k8/seed-0": "a0ee4d49da0915ac",
        "head-finetune/minilm/k8/seed-1": "1319ead9d4df1fb9",
        "head-finetune/minilm/k16/seed-0": "7086538f0dc1acda",
        "head-finetune/minilm/k16/seed-1": "aa5a0b81591496f0",
        "zero-shot/smollm2/k0": "404e5a96595768a9",
        "lora-r4/minilm/k8/seed-0": "015d7f516ff95672",
        "lora-r4/minilm/k8/seed-1": "646bdcfaf230aa8e",
        "lora-r4/minilm/k16/seed-0": "083723674bc349ff",
        "lora-r4/minilm/k16/seed-1": "beeece9dee71f9ae",
    },
    "ner": {"lora/minilm/k16/seed-0": "f7bd4650c2b826bc", "zero-shot/smollm2/k0": "0a66048b3f8bdb85"},
    "generation": {"lora/smollm2/k32/seed-0": "9aae76dbdadcf859"},
}


def _cells(task: str):
    config = resolve_prompt(validate_config(CONFIGS[task]))
    return config, plan_cells(config, FINGERPRINT)


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_cell_keys_stay_what_they_were(task):
    _, cells = _cells(task)
    assert {c.path: c.key for c in cells} == PINNED[task]


def test_cell_spec_is_typed_and_cell_json_keeps_its_fields():
    config, cells = _cells("ner")
    spec = CellSpec.build(cells[0], config, threads=2, workers=3)
    assert isinstance(spec.strategy, NerLoraConfig) and isinstance(spec.data, DataConfig)
    assert spec.data.shots == 16 and spec.task == "ner" and not spec.is_update
    written = json.loads(json.dumps(spec.as_json()))
    for field in ("key", "path", "strategy", "shots", "seed", "data", "prompt", "device", "task", "threads"):
        assert field in written, field
    assert "from" not in written and "from_run" not in written
    assert written["strategy"] == cells[0].strategy.model_dump(mode="json")  # every field of the subclass
    again = CellSpec.model_validate(written)  # read back: the strategy validated by its task's class
    assert isinstance(again.strategy, NerLoraConfig) and again == spec


def test_a_cell_json_of_an_older_version_still_reads():
    old = {  # as worker.cell_spec wrote it: a classification cell had no "task"
        "key": "0123456789abcdef",
        "path": "lora/minilm/k8/seed-0",
        "strategy": {"name": "lora", "backbone": "minilm", "r": 4},
        "shots": 8,
        "seed": 0,
        "data": {"dataset": "mr", "shots": 8},
        "prompt": None,
        "device": "auto",
        "trust_remote_code": False,
        "threads": 1,
        "workers": 1,
        "training": TrainingConfig().model_dump(mode="json"),
        "resume": False,
        "from": "runs/old/lora/minilm/k8/seed-0",
        "old_data": None,
        "continual": {"name": "naive"},
    }
    spec = CellSpec.model_validate(old)
    assert isinstance(spec.strategy, LoraStrategyConfig) and spec.task == "classification"
    assert spec.is_update and spec.from_run == old["from"] and spec.continual == {"name": "naive"}
    assert spec.as_json()["from"] == old["from"]
