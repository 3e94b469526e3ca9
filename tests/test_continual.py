"""Continual learning on the tiny random BERT with two synthetic tasks: 'sentiment' (label from positive vs
negative words) then 'topic' (label from question vs entity words, with sentiment words as noise). Training the
shared encoder hard on 'topic' moves the features the sentiment head reads, so naive fine-tuning forgets;
each method must forget measurably less. One `taskfit continual` run of every method serves all checks."""

from __future__ import annotations

import json
import random

import pytest
import torch
import yaml

from taskfit.cli import main
from taskfit.config import CONTINUAL_METHODS, validate_continual_config
from taskfit.continual import continual_metrics, load_continual_model
from taskfit.continual.methods import Replay, Tools
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from tests.conftest import WORDS, write_csv

POS, NEG, FILLER = WORDS[0:6], WORDS[6:12], WORDS[12:22]
QUESTION, ENTITY = ["who", "what", "where", "when"], ["city", "person", "number", "location"]
METHODS = [
    {"name": "naive"},
    {"name": "ewc", "strength": 10.0},
    {"name": "l2", "strength": 10.0},
    {"name": "replay", "buffer_size": 32},
    {"name": "replay", "id": "replay-balanced", "policy": "balanced", "buffer_size": 32},
    {"name": "lwf"},
    {"name": "per-task-lora", "lr": 3e-2},
    {"name": "per-task-adapter", "lr": 1e-2, "reduction_factor": 4},
]


def _rows(task: str, n: int, seed: int) -> list[dict]:
    rng, rows = random.Random(seed), []
    for i in range(n):
        yes = i % 2 == 0
        if task == "sentiment":
            words, label = rng.sample(POS if yes else NEG, 2) + rng.sample(FILLER, 3), "pos" if yes else "neg"
        else:
            words = (
                rng.sample(QUESTION if yes else ENTITY, 2) + rng.sample(POS + NEG, 2) + rng.sample(FILLER, 1)
            )
            label = "question" if yes else "entity"
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def _config(tmp_path, backbone, methods=METHODS) -> dict:
    tasks = []
    for t, task in enumerate(("sentiment", "topic")):
        files = {
            split: str(write_csv(tmp_path / f"{task}-{split}.csv", _rows(task, n, 10 * t + s)))
            for s, (split, n) in enumerate((("train", 64), ("dev", 16), ("test", 60)))
        }
        tasks.append({"name": task, "data": {**files, "shots": 16}})
    training = {"lr": 1e-2, "head_lr": 1e-2, "epochs": 8, "patience": 100, "dropout": 0.0}
    return {
        "name": "toy",
        "backbone": str(backbone),
        "tasks": tasks,
        "methods": methods,
        "device": "cpu",
        "training": training,
    }


@pytest.fixture(scope="module")
def continual_run(tmp_path_factory, tiny_bert_dir):
    tmp = tmp_path_factory.mktemp("continual")
    config = tmp / "continual.yaml"
    config.write_text(yaml.safe_dump(_config(tmp, tiny_bert_dir)), encoding="utf-8")
    out = tmp / "out"
    assert main(["continual", str(config), "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    return {"out": out, "config": config, "rows": {r["method"]: r for r in summary["methods"]}}


def forgetting(row: dict) -> float:
    return row["R"][0][0] - row["R"][1][0]  # accuracy on the first task: after it minus after the second


def test_naive_forgets_the_first_task(continual_run):
    naive = continual_run["rows"]["naive"]
    assert naive["R"][0][0] >= 0.9  # it learned the task
    assert forgetting(naive) >= 0.15
    assert naive["R"][1][1] >= 0.9  # and the second


@pytest.mark.parametrize("method", ["ewc", "l2", "replay", "replay-balanced", "lwf"])
def test_method_forgets_less_than_naive(continual_run, method):
    rows = continual_run["rows"]
    assert forgetting(rows[method]) <= forgetting(rows["naive"]) - 0.05
    assert rows[method]["R"][1][1] >= 0.75  # still learns the new task
    assert rows[method]["bwt"] > rows["naive"]["bwt"]


@pytest.mark.parametrize("method", ["per-task-lora", "per-task-adapter"])
def test_per_task_parts_forget_nothing_and_predict_by_task_name(continual_run, method):
    row = continual_run["rows"][method]
    assert row["R"][1][0] == row["R"][0][0] and row["bwt"] == 0.0
    assert row["trainable_params"] < continual_run["rows"]["naive"]["trainable_params"] / 4
    # The saved model chooses the adapter and head by name; the first task's predictions are those it had
    # right after its own stage (its adapter and head were never touched again).
    model = load_continual_model(continual_run["out"] / method / "seed-0")
    examples = [Example(r["text"]) for r in _rows("sentiment", 40, 2)]
    labels = model.predict(examples, "sentiment")
    truth = [r["label"] for r in _rows("sentiment", 40, 2)]
    assert sum(p == t for p, t in zip(labels, truth)) / 40 == pytest.approx(row["R"][0][0], abs=0.15)
    assert set(model.predict(examples, "topic")) <= {"question", "entity"}
    with pytest.raises(TaskfitError, match="unknown task 'sentimnet'.*Did you mean 'sentiment'"):
        model.predict(examples, "sentimnet")


@pytest.mark.parametrize("name", ["per-task-lora", "per-task-adapter"])
def test_per_task_predictions_on_first_task_identical_after_second(tiny_bert_dir, name):
    """Bit-for-bit: the stage on 'b' leaves everything task 'a' uses untouched."""
    from taskfit.config import CONTINUAL_METHODS
    from taskfit.continual.methods import METHODS
    from taskfit.continual.model import build_model, predict_task
    from taskfit.models.backbones import load_backbone

    backbone = load_backbone(str(tiny_bert_dir), "encoder", device="cpu")
    method = CONTINUAL_METHODS[name](name=name)
    model = build_model(backbone.model, {"a": ["x", "y"], "b": ["u", "v"]}, method, 0.0, "auto", 0)
    hooks = METHODS[name](method, Tools(backbone.tokenizer, 32, torch.device("cpu"), 0))
    examples = [Example(r["text"]) for r in _rows("sentiment", 16, 5)]
    a_before = predict_task(model, backbone.tokenizer, examples, "a", 32)[1]
    b_before = predict_task(model, backbone.tokenizer, examples, "b", 32)[1]
    hooks.prepare_stage(model, "b")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(
        ("task-b" in n or ".adapters.b." in n) or n.startswith("heads.b.") for n in trained
    )
    assert any(not n.startswith("heads.") for n in trained)  # the task's adapters train, not only its head
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model.train()
    model.use_task("b")
    for _ in range(3):
        batch = backbone.tokenizer([e.text for e in examples], padding=True, return_tensors="pt")
        model("b", batch["input_ids"], batch["attention_mask"]).sum().backward()
        opt.step()
    assert not torch.allclose(predict_task(model, backbone.tokenizer, examples, "b", 32)[1], b_before)
    assert torch.equal(predict_task(model, backbone.tokenizer, examples, "a", 32)[1], a_before)


def test_report_and_resume(continual_run, capsys):
    out = continual_run["out"]
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert "| naive | 1 |" in md and "| per-task-lora | 1 |" in md and "BWT" in md
    assert "<svg" in page and page.count("<table>") == 1 + len(METHODS)  # methods + one R matrix each
    result = json.loads((out / "naive" / "seed-0" / "result.json").read_text())
    assert len(result["R"]) == 2 and len(result["baseline"]) == 2
    assert (out / "naive" / "seed-0" / "model" / "model.safetensors").exists()
    stamp = (out / "naive" / "seed-0" / "result.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["continual", str(continual_run["config"]), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("finished before, skipped") == len(METHODS)
    assert (out / "naive" / "seed-0" / "result.json").stat().st_mtime_ns == stamp


def test_failed_run_keeps_the_others(tmp_path, tiny_bert_dir, capsys):
    raw = _config(
        tmp_path, tiny_bert_dir, [{"name": "naive"}, {"name": "per-task-lora", "target_modules": ["nope"]}]
    )
    raw["training"]["epochs"] = 1
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["continual", str(config), "--output", str(tmp_path / "o")]) == 1
    assert (tmp_path / "o" / "naive" / "seed-0" / "result.json").exists()
    assert (
        "'nope' matches no linear module"
        in (tmp_path / "o" / "per-task-lora" / "seed-0.partial" / "error.txt").read_text()
    )
    assert "Failed runs" in (tmp_path / "o" / "report.md").read_text()


def test_metrics_on_a_hand_made_matrix():
    R = [[0.9, 0.3, 0.2], [0.6, 0.8, 0.4], [0.5, 0.7, 0.95]]
    m = continual_metrics(R, baseline=[0.5, 0.25, 0.1])
    assert m["average_accuracy"] == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert m["bwt"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert m["fwt"] == pytest.approx(((0.3 - 0.25) + (0.4 - 0.1)) / 2)
    with pytest.raises(ValueError, match="T x T"):
        continual_metrics([[0.1, 0.2]], [0.1])


def test_replay_buffers_reservoir_and_balanced():
    tools = Tools(None, 8, torch.device("cpu"), 0)
    cfg = validate_continual_config(
        {
            "tasks": [{"name": "a", "data": {"dataset": "mr"}}, {"name": "b", "data": {"dataset": "mr"}}],
            "methods": [
                {"name": "replay", "buffer_size": 12},
                {"name": "replay", "id": "bal", "policy": "balanced", "buffer_size": 12},
            ],
        }
    )
    a = [Example(f"a{i}", "x" if i < 30 else "y") for i in range(40)]  # imbalanced: 30 x, 10 y
    b = [Example(f"b{i}", "u") for i in range(20)]
    reservoir, balanced = Replay(cfg.methods[0], tools), Replay(cfg.methods[1], tools)
    for hooks in (reservoir, balanced):
        hooks.after_stage(None, "a", a)
        hooks.after_stage(None, "b", b)
        assert len(hooks.buffer) == 12
        assert len({id(e) for _, e in hooks.buffer}) == 12
    groups = {}
    for task, e in balanced.buffer:
        groups[(task, e.label)] = groups.get((task, e.label), 0) + 1
    assert groups == {("a", "x"): 4, ("a", "y"): 4, ("b", "u"): 4}
    assert {t for t, _ in reservoir.buffer} == {"a", "b"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": [{"name": "ewk"}]}, "unknown continual method 'ewk'.*Did you mean 'ewc'"),
        ({"methods": [{"name": "replay", "polcy": "balanced"}]}, "'methods.0.polcy'. Did you mean 'policy'"),
        ({"methods": [{"name": "replay", "policy": "fifo"}]}, "policy"),
        ({"trainig": {}}, "unknown config key 'trainig'. Did you mean 'training'"),
        ({"methods": [{"name": "naive"}, {"name": "naive"}]}, "methods repeat.*give each an 'id'"),
        ({"tasks": [{"name": "a", "data": {"dataset": "mr"}}]}, "at least 2"),
        (
            {"tasks": [{"name": "a.b", "data": {"dataset": "mr"}}, {"name": "c", "data": {"dataset": "mr"}}]},
            "no '.' or '/'",
        ),
    ],
)
def test_config_errors(change, message):
    raw = {
        "tasks": [{"name": "a", "data": {"dataset": "mr"}}, {"name": "b", "data": {"dataset": "trec"}}],
        "methods": [{"name": "naive"}],
        **change,
    }
    with pytest.raises(TaskfitError, match=message):
        validate_continual_config(raw)


def test_predict_cli_chooses_the_task_by_name(continual_run, tmp_path, capsys):
    run = continual_run["out"] / "per-task-lora" / "seed-0"
    source = write_csv(tmp_path / "in.csv", [{"text": r["text"]} for r in _rows("topic", 10, 9)])
    out = tmp_path / "out.jsonl"
    assert (
        main(["predict", str(run), "--input", str(source), "--output", str(out), "--task-name", "topic"]) == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and {r["label"] for r in rows} <= {"question", "entity"}
    assert set(rows[0]["scores"]) == {"question", "entity"}
    assert main(["predict", str(run), "--input", str(source)]) == 2
    assert "give --task-name (sentiment, topic)" in capsys.readouterr().err


def test_ewc_fisher_covers_the_shared_encoder_scaled_to_mean_one(tiny_bert_dir):
    from taskfit.config import EwcMethod
    from taskfit.continual.methods import EWC
    from taskfit.continual.model import build_model
    from taskfit.models.backbones import load_backbone

    backbone = load_backbone(str(tiny_bert_dir), "encoder", device="cpu")
    method = EwcMethod(name="ewc", strength=2.0, fisher_samples=8)
    model = build_model(backbone.model, {"a": ["pos", "neg"]}, method, 0.0, "auto", 0)
    hooks = EWC(method, Tools(backbone.tokenizer, 32, torch.device("cpu"), 0))
    model.requires_grad_(True)
    examples = [Example(r["text"], r["label"]) for r in _rows("sentiment", 20, 3)]
    hooks.after_stage(model, "a", examples)
    fisher, anchor = hooks.penalties[0]
    assert set(fisher) == set(anchor) == set(model.shared_parameters())  # the encoder, not the head
    values = torch.cat([f.flatten() for f in fisher.values()])
    assert values.min() >= 0 and values.mean().item() == pytest.approx(1.0, rel=1e-4)
    assert hooks.extra_loss(model, {}, None).item() == 0.0  # at the anchor
    with torch.no_grad():
        next(iter(model.shared_parameters().values())).add_(0.1)
    assert hooks.extra_loss(model, {}, None).item() > 0


@pytest.mark.parametrize(
    "path", ["examples/continual/mr_tweets_trec.yaml", "bench/configs/continual_minilm.yaml"]
)
def test_shipped_continual_configs_validate(path):
    from pathlib import Path

    from taskfit.config import load_continual_config

    config = load_continual_config(Path(__file__).resolve().parents[1] / path)
    assert [t.name for t in config.tasks] == ["mr", "tweets-sentiment", "trec"]
    assert {m.name for m in config.methods} == set(CONTINUAL_METHODS)
