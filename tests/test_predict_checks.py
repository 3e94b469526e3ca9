"""Issue 19 #6: `taskfit predict` names its own flag when the text column is missing, and refuses a job that
cannot run (an interrupted output without --resume) before it loads the model."""

from __future__ import annotations

import pytest

from taskfit.cli import main


@pytest.fixture
def fake_run(tmp_path):
    """A folder that looks like a saved run but whose model cannot load: any load attempt fails loudly."""
    run = tmp_path / "run" / "model"
    run.mkdir(parents=True)
    (run / "strategy.json").write_text('{"strategy": {"name": "no-such-strategy"}, "labels": ["a", "b"]}')
    return run.parent


def test_a_missing_text_column_names_the_predict_flag(fake_run, tmp_path, capsys):
    data = tmp_path / "in.csv"
    data.write_text("review\ngreat\n")
    assert main(["predict", str(fake_run), "--input", str(data), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "column 'text' not found" in err and "--text-column" in err and "data.columns" not in err


def test_an_interrupted_output_is_refused_before_the_model_loads(fake_run, tmp_path, capsys):
    data = tmp_path / "in.csv"
    data.write_text("text\ngreat\n")
    (tmp_path / "o.jsonl.partial").write_text('{"label": "a"}\n')
    assert main(["predict", str(fake_run), "--input", str(data), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "holds an interrupted prediction; pass --resume" in err
    assert "no-such-strategy" not in err  # the model was never loaded
