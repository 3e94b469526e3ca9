"""task: extractive-qa. SQuAD EM/F1 against hand-computed values, windows over a long context mapping back to
exact character offsets, what lora trains, save/load, reader errors naming file and question id, and a
`taskfit compare` + predict end to end on the hand-written fixture (tiny random BERT)."""

import json
from pathlib import Path

import pytest
import torch

from taskfit.compare import run_experiment
from taskfit.config import QA_STRATEGY_CONFIGS, validate_config
from taskfit.errors import TaskfitError
from taskfit.evaluation.squad import exact_match_score, f1_score, normalize_answer, squad_metrics
from taskfit.serving.predictor import Predictor
from taskfit.strategies import Context, build_strategy, load_strategy
from taskfit.tasks.extractive_qa import best_answers, make_windows, read_qa
from tests.conftest import shipped_example

FIXTURES = Path(__file__).parent / "fixtures" / "qa"


def make(name, bert, **settings):
    raw = {"name": name, "backbone": str(bert), "epochs": 1, "max_length": 64, "doc_stride": 16, **settings}
    return build_strategy(QA_STRATEGY_CONFIGS[name].model_validate(raw), Context(labels=[]))


def test_squad_scores_match_hand_computed_values():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match_score("Paris!", "paris") == 1.0
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P 2/2, R 2/3
    assert f1_score("the", "a") == 0.0  # both normalise to nothing: no common token, as the official script
    m = squad_metrics(["Paris", "in 1889"], [["paris"], ["1889", "the year 1889"]])
    # EM: 1 + 0; F1: 1 + max(2/3 against '1889', 1/2 against 'year 1889')
    assert m["exact_match"] == pytest.approx(50.0)
    assert m["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_an_answer_in_a_later_window_maps_back_to_exact_character_offsets(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    question = read_qa(FIXTURES / "test.jsonl")[2]  # the long context
    text, start = question.answers[0]
    windows = make_windows(tokenizer, [question], 64, 16)
    assert len(windows) == 3 and all(len(w.input_ids) <= 64 for w in windows)
    assert (windows[0].start, windows[0].end) == (0, 0)  # not in the first window: trained to point at [CLS]
    second = windows[1]
    assert second.start > 0 and second.offsets[second.start][0] == start
    assert second.offsets[second.end][1] == start + len(text)
    # consecutive windows share doc_stride context tokens
    shared = [o for o in windows[0].offsets if o is not None][-16:]
    assert shared == [o for o in second.offsets if o is not None][:16]
    # logits that point at the answer's tokens in the second window only: the answer comes back verbatim
    logits = [torch.zeros(len(w.input_ids), 2) for w in windows]
    logits[1][second.start, 0] = logits[1][second.end, 1] = 10.0
    answer = best_answers([question], windows, logits, n_best=5, max_tokens=30)[0]
    assert (answer.text, answer.start, answer.end) == (text, start, start + len(text))
    assert question.text_pair[answer.start : answer.end] == "Clara Hoffmann"
    assert 0.5 < answer.score <= 1.0
    # a span longer than max_answer_length, or ending before it starts, is never chosen
    logits[1][second.end, 1] = -10.0
    logits[1][second.start - 1, 1] = 10.0
    assert best_answers([question], windows, logits, n_best=5, max_tokens=30)[0].end != start


def test_lora_trains_only_the_adapter_and_the_span_head(tiny_bert_dir):
    s = make("lora", tiny_bert_dir)
    trained = [n for n, p in s.model.named_parameters() if p.requires_grad]
    assert {n for n in trained if not n.startswith("head.")} and all(
        "lora_" in n or n.startswith("head.") for n in trained
    )
    assert s.model.head.weight.shape == (2, 32)  # start and end


@pytest.mark.parametrize("name", ["head-finetune", "lora"])
def test_training_moves_the_model_and_save_then_load_gives_identical_answers(name, tiny_bert_dir, tmp_path):
    s = make(name, tiny_bert_dir, epochs=2, lr=1e-3, dropout=0.0)
    train, test = read_qa(FIXTURES / "train.json"), read_qa(FIXTURES / "test.jsonl")
    s.fit(train, [])
    assert s.log[0]["train_loss"] > s.log[-1]["train_loss"]
    before = s.predict(test)
    for q, a in zip(test, before):
        assert q.text_pair[a.start : a.end] == a.text  # offsets into the original context
    s.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "strategy.json").read_text())["task"] == "extractive-qa"
    after = load_strategy(tmp_path / "model").predict(test)
    assert [(a.text, a.start, a.end) for a in before] == [(a.text, a.start, a.end) for a in after]
    assert [a.score for a in before] == pytest.approx([a.score for a in after], abs=1e-5)


def test_reader_errors_name_the_file_and_the_question(tmp_path):
    doc = json.loads((FIXTURES / "train.json").read_text())
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = 3
    bad = tmp_path / "squad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(
        TaskfitError,
        match=r"squad.json: question id 't4': answer 'Warsaw' does not match .* at answer_start 3 .*occurs at character 24",
    ):
        read_qa(bad)
    lines = (FIXTURES / "dev.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["answers"] = {"text": ["1859"], "answer_start": [0, 5]}
    flat = tmp_path / "dev.jsonl"
    flat.write_text("\n".join([lines[0], json.dumps(row)]) + "\n")
    with pytest.raises(TaskfitError, match=r"dev.jsonl:2: answers need as many 'text' as 'answer_start'"):
        read_qa(flat)
    flat.write_text(lines[0] + '\n{"question": "Where?", "answers": {"text": [], "answer_start": []}}\n')
    with pytest.raises(TaskfitError, match=r"dev.jsonl:2: missing or empty 'context'"):
        read_qa(flat)


def test_a_question_too_long_for_its_window_is_named(tiny_bert_dir):
    from transformers import AutoTokenizer

    from taskfit.tasks.extractive_qa import QAExample

    long = QAExample(
        text="good movie " * 30, text_pair="the plot was fun", source="train.json (question id x)"
    )
    with pytest.raises(TaskfitError, match=r"question id x\): the question is 60 tokens.*at least 80"):
        make_windows(AutoTokenizer.from_pretrained(tiny_bert_dir), [long], 64, 16)


def test_an_oversized_doc_stride_is_rejected_with_the_nearest_valid_value():
    with pytest.raises(
        TaskfitError,
        match=r"doc_stride \(40\) must be below half of max_length \(64\); nearest valid value: 31",
    ):
        validate_config(
            {
                "task": "extractive-qa",
                "data": {"train": "x.json"},
                "strategies": [{"name": "lora", "max_length": 64, "doc_stride": 40}],
            }
        )


def test_compare_runs_extractive_qa_end_to_end_and_predict_answers(tiny_bert_dir, tmp_path):
    raw = {
        "name": "qa",
        "task": "extractive-qa",
        "data": {
            "train": str(FIXTURES / "train.json"),
            "dev": str(FIXTURES / "dev.jsonl"),
            "test": str(FIXTURES / "test.jsonl"),
            "shots": 6,
        },
        "workers": 1,
        "threads_per_worker": 1,
        "strategies": [
            {"name": n, "backbone": str(tiny_bert_dir), "epochs": 2, "max_length": 64, "doc_stride": 16}
            for n in ("head-finetune", "lora")
        ],
    }
    raw["strategies"][1].update(search={"lr": [1e-4, 1e-3]}, trials=2)  # trials judged on dev SQuAD F1
    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    rows = {r["strategy"]: r for r in summary["strategies"]}
    assert set(rows) == {"head-finetune", "lora"} and all(
        r["runs"] == 1 and not r["failed"] for r in rows.values()
    )
    assert all(0 <= r["f1_mean"] <= 100 and r["exact_match_mean"] <= r["f1_mean"] for r in rows.values())
    cell = tmp_path / "out" / "head-finetune" / tiny_bert_dir.name / "k6" / "seed-0"
    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["train_examples"] == 6 and metrics["n"] == 4  # K = 6 questions in all
    predictions = [json.loads(line) for line in (cell / "predictions.jsonl").read_text().splitlines()]
    contexts = {q.qid: q.text_pair for q in read_qa(FIXTURES / "test.jsonl")}
    assert [p["id"] for p in predictions] == ["q1", "q2", "q3", "q4"]
    assert all(contexts[p["id"]][p["start"] : p["end"]] == p["predicted"] for p in predictions)
    results = (tmp_path / "out" / "results.md").read_text()
    assert "| F1 | EM |" in results and "at K=6 questions in all" in results
    trials = (tmp_path / "out" / "lora" / tiny_bert_dir.name / "k6" / "seed-0" / "search.jsonl").read_text()
    assert trials.count('"dev_f1"') == 3  # two trials and the choice

    from taskfit.data.readers import Example

    context = "The Colosseum is in Rome."
    predictor = Predictor.load(cell)
    out = predictor.predict([Example(text="Where is the Colosseum?", text_pair=context)])
    assert set(out[0]) == {"answer", "start", "end", "score"}
    assert context[out[0]["start"] : out[0]["end"]] == out[0]["answer"]

    import httpx

    from tests.test_serving import serving

    with serving(predictor) as url:  # POST /v1/predict with {text: question, text_pair: context}
        body = httpx.post(
            f"{url}/v1/predict",
            json={"inputs": [{"text": "Where is the Colosseum?", "text_pair": context}]},
            timeout=20,
        ).json()
    assert body["task"] == "extractive-qa" and body["predictions"] == [pytest.approx(out[0])]

    from taskfit.cli import main

    written = tmp_path / "answers.jsonl"
    args = ["predict", str(cell), "--input", str(FIXTURES / "test.jsonl"), "--output", str(written)]
    assert main([*args, "--text-column", "question", "--text-pair-column", "context"]) == 0
    answers = [json.loads(line) for line in written.read_text().splitlines()]
    assert [a["answer"] for a in answers] == [p["predicted"] for p in predictions]  # as in the test scores


def test_the_example_config_reads_its_shipped_data():
    from taskfit.data.prepare import sample_splits

    config, data, pools = shipped_example("extractive-qa.yaml", "extractive-qa")
    assert (len(pools.train), len(pools.dev), len(pools.test)) == (14, 3, 4) and pools.labels == []
    first, second = sample_splits(pools, data, 0), sample_splits(pools, data, 1)
    assert len(first.train) == 8 and [e.qid for e in first.train] != [e.qid for e in second.train]
