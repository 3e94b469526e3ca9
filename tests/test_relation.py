"""task: relation. Markers and their tokens, windowing around the entities, what trains, save/load, metrics,
reader errors, and a `taskfit compare` + predict end to end on the hand-written fixture (tiny random BERT)."""

import json
from pathlib import Path

import pytest
import torch

from taskfit.compare import run_experiment
from taskfit.config import RELATION_STRATEGY_CONFIGS, validate_config
from taskfit.errors import TaskfitError
from taskfit.serving.predictor import Predictor
from taskfit.strategies import Context, load_strategy
from taskfit.tasks.relation import (
    MARKERS,
    RelationExample,
    _windows,
    encode_relation,
    insert_markers,
    parse_marked,
    read_relations,
    relation_from_row,
    relation_metrics,
)
from tests.conftest import shipped_example

FIXTURES = Path(__file__).parent / "fixtures" / "relation"
LABELS = ["born_in", "founded_by", "no_relation"]


def make(name, bert, **settings):
    config = RELATION_STRATEGY_CONFIGS[name].model_validate(
        {"name": name, "backbone": str(bert), "epochs": 1, "max_length": 32, **settings}
    )
    from taskfit.strategies import build_strategy

    return build_strategy(config, Context(labels=LABELS, no_relation_label="no_relation"))


def test_markers_go_around_the_spans_in_either_order_and_parse_back():
    e = read_relations(FIXTURES / "train.jsonl")[0]  # head Microsoft after tail Bill Gates
    marked = insert_markers(e.text, e.head, e.tail)
    assert marked == "[E2] Bill Gates [/E2] founded [E1] Microsoft [/E1] in 1975."
    back = parse_marked("[E2]Bill Gates[/E2] founded [E1] Microsoft [/E1] in 1975.")
    assert back.text[back.head[0] : back.head[1]] == "Microsoft"
    assert back.text[back.tail[0] : back.tail[1]] == "Bill Gates"
    with pytest.raises(TaskfitError, match=r"needs each of \[E1\] \[/E1\] \[E2\] \[/E2\] once"):
        parse_marked("[E1]Bill Gates[/E1] founded Microsoft.")


def test_markers_are_single_special_tokens_with_new_embedding_rows(tiny_bert_dir):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(tiny_bert_dir))
    s = make("head-finetune", tiny_bert_dir)
    ids = s.tokenizer.convert_tokens_to_ids(list(MARKERS))
    assert ids == list(range(vocab, vocab + 4))  # appended, not mapped to [UNK]
    assert s.tokenizer.tokenize("[E1] good [/E1] movie [E2]film[/E2]") == [
        "[E1]", "good", "[/E1]", "movie", "[E2]", "film", "[/E2]"
    ]  # fmt: skip
    embeddings = s.model.encoder.get_input_embeddings()
    # the embedding layer is frozen by default: peft's trainable-tokens layer wraps it and trains the marker rows
    assert getattr(embeddings, "base_layer", embeddings).num_embeddings == vocab + 4
    example = RelationExample(text="good movie and a film", label="born_in", head=(0, 4), tail=(17, 21))
    batch = s._batch([example])
    ids_row = batch["input_ids"][0].tolist()
    assert ids_row[batch["head_index"][0]] == ids[0] and ids_row[batch["tail_index"][0]] == ids[2]
    assert ids_row[batch["head_index"][0] + 1] == s.tokenizer.convert_tokens_to_ids("good")


def test_a_sentence_longer_than_max_length_is_windowed_around_the_entities(tiny_bert_dir):
    s = make("head-finetune", tiny_bert_dir)
    long = read_relations(FIXTURES / "test.jsonl")[-1]
    assert len(s.tokenizer(insert_markers(long.text, long.head, long.tail))["input_ids"]) > 32
    ids, h, t = encode_relation(s.tokenizer, long, 16, s.marker_ids)
    assert len(ids) <= 16
    assert all(m in ids for m in s.marker_ids)  # no marker fell out
    assert ids[h] == s.marker_ids[0] and ids[t] == s.marker_ids[2]
    assert ids[0] == s.tokenizer.cls_token_id and ids[-1] == s.tokenizer.sep_token_id
    # both entities close together: one window holding both; far apart: one window around each
    assert _windows(100, [40, 42, 50, 52], 20) == [(37, 57)]  # 13 marked tokens + 3 before, 4 after
    far = _windows(100, [2, 4, 90, 93], 20)
    assert sum(b - a for a, b in far) <= 20 and all(any(a <= m < b for a, b in far) for m in (2, 4, 90, 93))


def test_lora_trains_only_the_adapter_the_marker_rows_and_the_head(tiny_bert_dir):
    s = make("lora", tiny_bert_dir)
    trained = [n for n, p in s.model.named_parameters() if p.requires_grad]
    assert trained and all(
        "lora_" in n or "trainable_tokens_delta" in n or n.startswith("head.") for n in trained
    )
    markers = [n for n in trained if "trainable_tokens_delta" in n]
    assert len(markers) == 1
    delta = dict(s.model.named_parameters())[markers[0]]
    assert delta.shape == (4, 32)  # just the four marker rows
    before = delta.detach().clone()
    base = s.model.encoder.get_input_embeddings()
    train = read_relations(FIXTURES / "train.jsonl")
    s.fit(train, [])
    assert not torch.equal(before, delta.detach())  # the markers trained
    assert s.model.head.weight.shape == (3, 64)  # [h(E1); h(E2)]
    assert base is s.model.encoder.get_input_embeddings()


@pytest.mark.parametrize("name", ["bitfit", "adapter"])
def test_bitfit_and_adapter_train_the_marker_rows_too(name, tiny_bert_dir):
    s = make(name, tiny_bert_dir)
    trained = [n for n, p in s.model.named_parameters() if p.requires_grad]
    assert any("trainable_tokens_delta" in n for n in trained)
    assert not any(n.endswith("word_embeddings.weight") or "base_layer.weight" in n for n in trained)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("head-finetune", {}),
        ("lora", {}),
        ("bitfit", {}),
        ("adapter", {}),
        ("head-finetune", {"entity_pooling": "pooled"}),
    ],
)
def test_save_then_load_gives_identical_predictions(name, extra, tiny_bert_dir, tmp_path):
    s = make(name, tiny_bert_dir, **extra)
    train = read_relations(FIXTURES / "train.jsonl")
    test = read_relations(FIXTURES / "test.jsonl")
    s.fit(train, [])
    before = s.predict(test)
    s.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "strategy.json").read_text())["task"] == "relation"
    again = load_strategy(tmp_path / "model")
    after = again.predict(test)
    if name == "lora":  # only what trained: LoRA, the four marker rows (not the resized matrix), the head
        from safetensors.torch import load_file

        saved = load_file(tmp_path / "model" / "adapter" / "adapter_model.safetensors")
        assert not any("word_embeddings.weight" in k for k in saved)
        assert sum(v.numel() for k, v in saved.items() if "trainable_tokens" in k) == 4 * 32
    assert before.labels == after.labels
    assert torch.allclose(before.probs, after.probs, atol=1e-5)


def test_metrics_leave_out_the_no_relation_label():
    gold = ["a", "a", "none", "b"]
    pred = ["a", "none", "none", "a"]
    m = relation_metrics(gold, pred, ["a", "b", "none"], "none")
    assert m["accuracy"] == pytest.approx(0.5)
    # micro: 1 correct of 2 predicted relations (P 1/2) and of 3 gold relations (R 1/3): F1 = 0.4
    assert m["micro_precision"] == pytest.approx(0.5) and m["micro_recall"] == pytest.approx(1 / 3)
    assert m["micro_f1"] == pytest.approx(0.4)
    assert m["macro_f1"] == pytest.approx(0.25)  # a: F1 0.5, b: 0; 'none' not averaged
    assert m["majority_micro_f1"] == pytest.approx(4 / 7)  # always 'a': P 2/4, R 2/3
    same = relation_metrics(gold, pred, ["a", "b", "none"], None)
    assert same["micro_f1"] == pytest.approx(same["accuracy"])  # every label counted: micro-F1 = accuracy


def test_reader_accepts_token_spans_and_names_file_and_line_on_errors(tmp_path):
    e = relation_from_row(
        {
            "tokens": ["Ada", "Lovelace", "was", "born", "in", "London"],
            "head": [0, 2],
            "tail": [5, 6],
            "label": "x",
        },
        "f:1",
    )
    assert e.text[e.head[0] : e.head[1]] == "Ada Lovelace" and e.text[e.tail[0] : e.tail[1]] == "London"
    bad = tmp_path / "bad.jsonl"
    good = '{"text": "Ada was born in London", "head": [0, 3], "tail": [16, 22], "label": "born_in"}'
    cases = [
        (
            '{"text": "Ada was born in London", "head": [0, 30], "tail": [16, 22], "label": "x"}',
            "is not inside",
        ),
        ('{"text": "Ada was born in London", "head": [0, 9], "tail": [4, 12], "label": "x"}', "overlap"),
        (
            '{"text": "Ada was born in London", "head": {"start": 0, "end": 3, "text": "Bob"}, "tail": [16, 22], "label": "x"}',
            "'Ada' in the text, but its 'text' says 'Bob'",
        ),
        ('{"text": "Ada was born in London", "tail": [16, 22], "label": "x"}', "missing 'head'"),
        ('{"text": "Ada was born in London", "head": [0, 3], "tail": [16, 22]}', "missing 'label'"),
    ]
    for row, message in cases:
        bad.write_text(good + "\n" + row + "\n")
        with pytest.raises(TaskfitError, match=rf"bad.jsonl:2: .*{message}"):
            read_relations(bad)


def relation_grid(tmp_path, bert, **data):
    return {
        "name": "rel",
        "task": "relation",
        "data": {
            "train": str(FIXTURES / "train.jsonl"),
            "dev": str(FIXTURES / "dev.jsonl"),
            "test": str(FIXTURES / "test.jsonl"),
            "shots": 2,
            "no_relation_label": "no_relation",
            **data,
        },
        "workers": 1,
        "threads_per_worker": 1,
        "strategies": [
            {"name": "head-finetune", "backbone": str(bert), "epochs": 2, "max_length": 32},
            {"name": "lora", "backbone": str(bert), "epochs": 2, "max_length": 32},
        ],
    }


def test_compare_runs_relation_end_to_end_and_predict_answers_marked_text(tiny_bert_dir, tmp_path):
    summary = run_experiment(
        validate_config(relation_grid(tmp_path, tiny_bert_dir)), tmp_path / "out", isolate=False
    )
    rows = {r["strategy"]: r for r in summary["strategies"]}
    assert set(rows) == {"head-finetune", "lora"} and all(
        r["runs"] == 1 and not r["failed"] for r in rows.values()
    )
    assert all(0 <= r["micro_f1_mean"] <= 1 for r in rows.values())
    cell = tmp_path / "out" / "lora" / tiny_bert_dir.name / "k2" / "seed-0"
    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["no_relation_label"] == "no_relation" and metrics["train_examples"] == 6
    # the decision correction is classification's (Task.corrects_decisions): a relation cell's labels and
    # scores are its model's, as its cell key says
    assert "correction" not in metrics and "correction" not in json.loads(
        (cell / "model" / "strategy.json").read_text()
    )
    predictions = [json.loads(line) for line in (cell / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 7 and predictions[0]["text"].startswith("[E2] Mark Zuckerberg [/E2] founded")
    assert "micro-F1" in (tmp_path / "out" / "results.md").read_text()

    from taskfit.data.readers import Example

    predictor = Predictor.load(cell)
    out = predictor.predict([Example(text="[E1]Facebook[/E1] was founded by [E2]Mark Zuckerberg[/E2].")])
    assert out[0]["label"] in LABELS and sum(out[0]["scores"].values()) == pytest.approx(1.0)

    from taskfit.cli import main

    marked = tmp_path / "marked.jsonl"  # taskfit predict: the markers typed into the text
    marked.write_text("\n".join(json.dumps({"text": p["text"]}) for p in predictions) + "\n")
    assert main(["predict", str(cell), "--input", str(marked), "--output", str(tmp_path / "p.jsonl")]) == 0
    labels = [json.loads(line)["label"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert labels == [p["predicted"] for p in predictions]  # the same answers as the test scores

    from taskfit.export import export_run

    with pytest.raises(TaskfitError, match="not relation runs: their head"):
        export_run(cell, tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


def test_a_strategy_the_task_lacks_is_rejected_with_the_task_that_has_it():
    raw = {"task": "relation", "data": {"train": "x.jsonl"}, "strategies": [{"name": "zero-shot"}]}
    with pytest.raises(
        TaskfitError, match=r"available: head-finetune, lora, bitfit, adapter.*set task: classification"
    ):
        validate_config(raw)


def test_a_no_relation_label_that_is_not_a_label_is_rejected(tiny_bert_dir, tmp_path):
    raw = relation_grid(tmp_path, tiny_bert_dir, no_relation_label="no_relations")
    with pytest.raises(TaskfitError, match="'no_relations' is not a label.*Did you mean 'no_relation'"):
        run_experiment(validate_config(raw), tmp_path / "out", isolate=False)


def test_the_example_config_reads_its_shipped_data():
    config, data, pools = shipped_example("relation.yaml", "relation")
    assert pools.labels == LABELS and len(pools.train) == 15 and len(pools.test) == 7
    assert {s.name for s in config.strategies} == {"head-finetune", "lora", "bitfit", "adapter"}
