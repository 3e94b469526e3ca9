import json

import pytest
import yaml

from taskfit.cli import main
from taskfit.compare import run_experiment
from taskfit.config import validate_config
from taskfit.errors import TaskfitError


def experiment(train_csv, llama, bert, **extra):
    raw = {
        "name": "toy",
        "data": {"train": str(train_csv), "shots": 4, "dev_shots": 2},
        "seeds": [0, 1],
        "prompt": {
            "template": "Review: {text}\nSentiment:{answer}",
            "verbalizer": {"positive": [" positive"], "negative": [" negative"]},
        },
        "strategies": [
            {"name": "zero-shot", "backbone": str(llama)},
            {"name": "in-context", "backbone": str(llama), "demos_per_class": 1},
            {"name": "head-finetune", "backbone": str(bert), "epochs": 2},
        ],
    }
    raw.update(extra)
    return raw


def test_run_writes_every_cell_and_a_table(sentiment_csv, tiny_llama_dir, tiny_bert_dir, tmp_path, capsys):
    cfg = validate_config(experiment(sentiment_csv, tiny_llama_dir, tiny_bert_dir))
    summary = run_experiment(cfg, tmp_path / "out")
    out = tmp_path / "out"
    rows = {r["strategy"]: r for r in summary["strategies"]}
    assert rows["zero-shot"]["runs"] == 1  # does not depend on the seed
    assert rows["in-context"]["runs"] == 2 and rows["head-finetune"]["runs"] == 2
    cells = ["zero-shot/tiny-llama0/k0"]  # no training data: one cell, no seed
    cells += [
        f"{s}/k4/seed-{seed}"
        for s in ("in-context/tiny-llama0", "head-finetune/tiny-bert0")
        for seed in (0, 1)
    ]
    for path in cells:
        cell = out / path
        metrics = json.loads((cell / "metrics.json").read_text())
        assert metrics["n"] == 12 and 0 <= metrics["accuracy"] <= 1
        assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 12
        assert len((cell / "predictions.jsonl").read_text().splitlines()) == 12
        assert (cell / "model" / "strategy.json").exists()
    assert (out / "model.safetensors").exists() is False
    assert (out / "head-finetune" / "tiny-bert0" / "k4" / "seed-0" / "model" / "model.safetensors").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [0, 1]
    table = (out / "results.md").read_text()
    assert "| head-finetune |" in table and "Majority-class baseline" in table
    assert "| strategy | backbone | K | dev accuracy (ranks) | accuracy |" in capsys.readouterr().out


def test_a_failing_cell_is_reported_and_the_rest_finish(
    sentiment_csv, tiny_llama_dir, tiny_bert_dir, tmp_path, monkeypatch
):
    from taskfit.strategies import in_context

    def boom(self, examples):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(in_context.InContext, "predict", boom)
    cfg = validate_config(experiment(sentiment_csv, tiny_llama_dir, tiny_bert_dir, seeds=[0]))
    summary = run_experiment(cfg, tmp_path / "out", isolate=False)  # the patch lives in this process
    rows = {r["strategy"]: r for r in summary["strategies"]}
    assert rows["in-context"]["failed"] == 1 and rows["in-context"]["accuracy_mean"] is None
    assert rows["head-finetune"]["runs"] == 1 and rows["zero-shot"]["runs"] == 1
    assert (
        "simulated crash"
        in (tmp_path / "out" / "in-context" / "tiny-llama0" / "k4" / "seed-0" / "error.txt").read_text()
    )


def test_plan_is_validated_before_training(sentiment_csv, tiny_llama_dir, tiny_bert_dir, tmp_path):
    raw = experiment(sentiment_csv, tiny_llama_dir, tiny_bert_dir)
    raw["strategies"].append({"name": "in-context", "id": "ic-bert", "backbone": str(tiny_bert_dir)})
    with pytest.raises(TaskfitError, match="'ic-bert' needs a causal-lm backbone"):
        run_experiment(validate_config(raw), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing ran
    raw = experiment(sentiment_csv, tiny_llama_dir, tiny_bert_dir)
    raw["prompt"]["verbalizer"] = {"positive": [" positive"]}
    with pytest.raises(TaskfitError, match="label 'negative' has no verbalizer word"):
        run_experiment(validate_config(raw), tmp_path / "out2")


def test_cli_run_then_predict(sentiment_csv, tiny_llama_dir, tiny_bert_dir, tmp_path, capsys):
    raw = experiment(sentiment_csv, tiny_llama_dir, tiny_bert_dir, seeds=[0])
    raw["strategies"] = raw["strategies"][2:]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "out")]) == 0
    (tmp_path / "in.jsonl").write_text('{"text": "good great fun"}\n{"text": "awful boring"}\n')
    assert (
        main(
            [
                "predict",
                str(tmp_path / "out" / "head-finetune" / "tiny-bert0" / "k4" / "seed-0"),
                "--input",
                str(tmp_path / "in.jsonl"),
                "--output",
                str(tmp_path / "p.jsonl"),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["good great fun", "awful boring"]
    assert all(set(r["scores"]) == {"negative", "positive"} for r in rows)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"sedes": [1]}, "unknown config key 'sedes'. Did you mean 'seeds'?"),
        ({"data": {"train": "nope.csv"}}, "data file not found: nope.csv"),
        (
            {"data": {"train": "TRAIN", "columns": {"text": "review"}}},
            "column 'review' not found; columns found: text, label",
        ),
        ({"data": {"train": "TRAIN", "shots": 100}}, "K=100 examples per class"),
    ],
)
def test_cli_errors_are_one_clear_line(edit, message, sentiment_csv, tmp_path, capsys):
    raw = {"data": {"train": str(sentiment_csv)}, "strategies": [{"name": "head-finetune"}]}
    for key, value in edit.items():
        if isinstance(value, dict):
            value = {k: (str(sentiment_csv) if v == "TRAIN" else v) for k, v in value.items()}
        raw[key] = value
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_datasets_lists_the_catalog(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("mr", "trec", "tweets-sentiment", "zh-sentiment"):
        assert name in out
