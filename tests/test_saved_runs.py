"""Runs saved by taskfit before the registry redesign (commit 132cf1b; scripts/make_saved_run_fixture.py wrote
tests/fixtures/saved_runs) still load, and predict what the old code predicted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from taskfit.data.ner import NerExample
from taskfit.data.readers import Example
from taskfit.strategies import BackboneCache, load_strategy

FIXTURE = Path(__file__).parent / "fixtures" / "saved_runs"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
LABELS = ["negative", "positive"]
TEXTS = [f"{w} movie" for w in ("good great", "bad awful", "loved fun", "hated boring")]
SENTENCES = [
    NerExample(text=t, tokens=tuple(t), spans=tuple((i, i + 1) for i in range(4)), tags=tags)
    for t, tags in (
        ("张三北京", ("B-PER", "I-PER", "B-LOC", "I-LOC")),
        ("李四好人", ("B-PER", "I-PER", "O", "O")),
    )
]


@pytest.mark.parametrize("run", sorted(EXPECTED))
def test_a_run_saved_before_the_redesign_loads_and_predicts_the_same(run, tmp_path):
    shutil.copytree(FIXTURE / "tiny-bert", tmp_path / "tiny-bert")
    shutil.copytree(FIXTURE / run, tmp_path / run)
    model = tmp_path / run / "model"
    saved = json.loads((model / "strategy.json").read_text())
    saved["strategy"]["backbone"] = str(tmp_path / "tiny-bert")  # where the base backbone is on this machine
    (model / "strategy.json").write_text(json.dumps(saved))

    strategy = load_strategy(model, BackboneCache(device="cpu"))
    if run.startswith("ner-"):
        assert [p["tags"] for p in strategy.predict(SENTENCES)] == EXPECTED[run]
    else:
        train = [Example(t, LABELS[i % 2 == 0]) for i, t in enumerate(TEXTS * 3)]
        probs = strategy.predict(train).probs
        assert torch.allclose(probs, torch.tensor(EXPECTED[run]), atol=1e-6)


@pytest.mark.parametrize("layout", ["model", "cell/model", "grid/final/model"])
def test_predict_export_and_from_updates_find_the_saved_model_the_same_way(layout, tmp_path):
    """Issue 32: the rule was written three times, and a `from:` update did not look in a grid's final/."""
    from taskfit import export
    from taskfit.continual.incremental import saved_model_dir
    from taskfit.serving import predictor
    from taskfit.strategies.saved import find_model_dir

    assert export.find_model_dir is predictor.find_model_dir is find_model_dir  # one rule
    saved = tmp_path / layout
    saved.mkdir(parents=True)
    (saved / "strategy.json").write_text("{}")
    given = tmp_path / layout.split("/")[0] if "/" in layout else saved
    assert find_model_dir(given) == saved_model_dir(given) == saved
