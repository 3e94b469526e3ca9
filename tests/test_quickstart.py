"""`taskfit compare DATA_FILE` / `taskfit init DATA_FILE`: a grid from a data file alone, label words from
label names, and the grid's estimate of the time left."""

from __future__ import annotations

import random

import pytest
import yaml

from taskfit import quickstart
from taskfit.cli import main
from taskfit.errors import TaskfitError
from taskfit.progress import GridProgress, cell_estimate, estimate_left, format_duration
from tests.conftest import WORDS, write_csv


def reviews_csv(path, n=60):
    """Two columns with other names than text/label, labels pos/neg, separable by word."""
    rng = random.Random(3)
    pos, neg, filler = WORDS[0:6], WORDS[6:12], WORDS[12:22]
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(pos if label == "pos" else neg, 2) + rng.sample(filler, 4)
        rng.shuffle(words)
        rows.append({"comment_body": " ".join(words) + f" {i}", "verdict": label})
    return write_csv(path, rows)


def test_label_words_expand_known_abbreviations_and_keep_others():
    assert quickstart.label_word("pos") == "positive"
    assert quickstart.label_word("NEG") == "negative"
    assert quickstart.label_word("sports_news") == "sports news"
    assert quickstart.label_word("weather") == "weather"
    prompt = quickstart.derive_prompt(["neg", "pos"])
    assert prompt["verbalizer"] == {"neg": [" negative"], "pos": [" positive"]}
    assert prompt["label_descriptions"]["pos"] == "a positive review"
    zh = quickstart.derive_prompt(["negative", "positive"], ["这本书很好看", "质量太差了"])
    assert zh["verbalizer"]["positive"] == ["正面"] and "{text}" in zh["template"]


def test_budget_parsing():
    assert quickstart.parse_budget("15m") == 900
    assert quickstart.parse_budget("1h30m") == 5400
    assert quickstart.parse_budget("90s") == 90
    assert quickstart.parse_budget("600") == 600
    with pytest.raises(TaskfitError, match="15m"):
        quickstart.parse_budget("soon")


def test_columns_task_and_cuts_are_detected(tmp_path):
    csv = reviews_csv(tmp_path / "my.csv", n=400)
    quick = quickstart.plan(str(csv), budget="15m")
    assert quick.raw["data"]["columns"] == {"text": "comment_body", "label": "verdict"}
    assert quick.raw["prompt"]["label_descriptions"] == {
        "neg": "a negative review",
        "pos": "a positive review",
    }
    small = quickstart.plan(str(csv), budget="1m")
    assert small.cuts and small.estimate_s < quick.estimate_s
    assert "cut to fit the budget" in small.describe()
    with pytest.raises(TaskfitError, match="--text 'body' is not a column"):
        quickstart.plan(str(csv), text="body")


def test_init_writes_a_config_that_validates(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    reviews_csv(tmp_path / "my.csv")
    assert main(["init", "my.csv"]) == 0
    text = (tmp_path / "my.yaml").read_text(encoding="utf-8")
    assert text.startswith("# taskfit config derived from my.csv")
    raw = yaml.safe_load(text)
    assert raw["data"]["train"] == "my.csv" and "workers" not in raw  # only what differs from the defaults
    assert main(["validate", "my.yaml"]) == 0
    assert main(["init", "my.csv"]) == 2  # exists: not overwritten without --force
    assert "--force" in capsys.readouterr().err
    assert main(["compare", "my.yaml", "--budget", "1h"]) == 2  # a config's grid is its own
    assert "--budget: only with a data file" in capsys.readouterr().err


def test_eta_lists_the_pending_cells_on_the_free_slots():
    finished = [("a", "8", 10.0), ("a", "8", 12.0), ("b", "8", 4.0), ("z", "0", 30.0)]
    # a at K=16: only K=8 finished -> its mean 11 s scaled by (16 + 8) / (8 + 8) = 16.5 s; 5 s of it done
    running = [("a", "16", 5.0)]
    # b at K=16: 4 * 1.5 = 6 s; c never seen: the mean of the cells that train (a, b; not z), 26/3 s
    pending = [("a", "16"), ("b", "16"), ("c", "8"), ("y", "0")]  # y: like z (no training), 30 s
    # slots [11.5, 0] -> a16 on slot 2 (16.5) -> b16 on slot 1 (17.5) -> c8 on slot 2 (16.5 + 26/3 = 25.17)
    # -> y on slot 1 (17.5 + 30 = 47.5)
    assert estimate_left(finished, running, pending, workers=2) == pytest.approx(47.5)
    assert estimate_left(finished, [], [("a", "8")], workers=1) == pytest.approx(11)
    assert estimate_left(finished, [], [("a", "all")], workers=1) == pytest.approx(11)  # K=all: unscaled
    assert estimate_left([], running, pending, workers=2) is None


def test_eta_reads_the_same_backbone_first_and_a_line_through_a_groups_k():
    """On the default grid the first third is smollm2's prompting cells (~90 s) and one minilm row: lora and
    contrastive on minilm were estimated from all trained cells and the time left read 43% high."""
    finished = [("in-context/smollm2", "8", 90.0), ("head-finetune/minilm", "8", 30.0)]
    assert cell_estimate("lora/minilm", "8", finished) == pytest.approx(30.0)  # minilm's cells, not smollm2's
    assert cell_estimate("lora/gpt2", "8", finished) == pytest.approx(
        60.0
    )  # unseen backbone: every trained cell
    # in-context barely grows with K (its demonstrations are capped): two K give a line, not the K+8 rule
    curve = [("in-context/smollm2", "8", 75.0), ("in-context/smollm2", "16", 85.0)]
    assert cell_estimate("in-context/smollm2", "32", curve) == pytest.approx(105.0)
    assert cell_estimate("in-context/smollm2", "32", curve[:1]) == pytest.approx(75.0 * 40 / 16)


def test_grid_progress_lines_say_elapsed_done_left(tmp_path):
    now = [0.0]

    class Stream:
        lines: list[str] = []

        def write(self, text):
            self.lines.append(text)

        def flush(self):
            pass

    cells = [(f"s/k8/seed-{i}", "s/minilm", "8") for i in range(4)]
    progress = GridProgress(cells, workers=1, stream=Stream(), out=tmp_path, clock=lambda: now[0])
    assert "time left: estimated after the first cell" in progress.summary()
    progress.start("s/k8/seed-0")
    (tmp_path / "s/k8/seed-0").mkdir(parents=True)
    (tmp_path / "s/k8/seed-0/log.txt").write_text("  head-finetune train: 12/40 (30%, 1.0/s)\n")
    assert progress.steps() == "s/k8/seed-0 head-finetune train 12/40"
    now[0] = 30.0
    progress.end("s/k8/seed-0")
    assert progress.summary() == "elapsed 30s, 1/4 done, 3 left, about 1m30s left"
    assert format_duration(3725) == "1h02m"


def test_compare_a_csv_without_config_then_rerun_its_config(
    tmp_path, monkeypatch, capsys, tiny_bert_dir, tiny_llama_dir
):
    """The README's second command: a leaderboard and a recommendation from a CSV alone; the config it wrote
    reruns the same grid (every cell already finished)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASKFIT_BACKBONES", f"minilm={tiny_bert_dir},smollm2={tiny_llama_dir}")
    reviews_csv(tmp_path / "my.csv")
    assert main(["compare", "my.csv", "--budget", "1m", "--in-process"]) == 0
    out = capsys.readouterr()
    # 60 labels: cross-validated over all of them, nothing held out (tiny random models may recommend nothing)
    assert "| strategy |" in out.out and ("Best by accuracy" in out.out or "Nothing to recommend" in out.out)
    assert "protocol: 60 labelled examples" in out.err and "cross-validat" in out.out
    assert "columns: text 'comment_body', label 'verdict'" in out.err
    assert "taskfit compare runs/my/taskfit.yaml" in out.err
    assert main(["validate", "runs/my/taskfit.yaml"]) == 0
    assert main(["compare", "runs/my/taskfit.yaml", "--in-process"]) == 0
    rerun = capsys.readouterr().out
    assert "already finished" in rerun and "  start " not in rerun and " to run" not in rerun


@pytest.mark.integration
def test_encoder_zero_shot_with_labels_pos_neg_beats_majority_without_descriptions(tmp_path, monkeypatch):
    """No prompt block, labels pos/neg: resolve_prompt derives "a positive review" / "a negative review", and
    all-MiniLM-L6-v2 zero-shot beats the majority class on a separable set (with the bare names 'pos' and
    'neg' it predicted one class for everything)."""
    from taskfit.compare import run_experiment
    from taskfit.compare.plan import resolve_prompt
    from taskfit.config import validate_config

    monkeypatch.delenv("TASKFIT_BACKBONES", raising=False)
    rng = random.Random(0)
    good = ["a wonderful, moving film", "great acting and a superb plot", "I loved every minute of it"]
    bad = ["a dull, boring mess", "terrible acting and an awful plot", "I hated every minute of it"]
    rows = [
        {"comment_body": f"{rng.choice(good if i % 2 else bad)} ({i})", "verdict": "pos" if i % 2 else "neg"}
        for i in range(80)
    ]
    csv = write_csv(tmp_path / "my.csv", rows)
    raw = {
        "name": "zs",
        "data": {"train": str(csv), "columns": {"text": "comment_body", "label": "verdict"}},
        "strategies": [{"name": "zero-shot", "backbone": "minilm"}],
    }
    config = validate_config(raw)
    resolved = resolve_prompt(config, ["neg", "pos"])
    assert resolved.prompt.label_descriptions == {"neg": "a negative review", "pos": "a positive review"}
    summary = run_experiment(config, tmp_path / "out", isolate=False)
    accuracy = summary["cells"][0]["accuracy"]
    assert accuracy > summary["majority_baseline"]["accuracy"] + 0.2


def test_a_conll_file_gives_a_ner_grid(tmp_path):
    lines = []
    for i in range(40):
        lines += [f"Alice{i % 3} B-PER", "went O", "to O", f"Rome{i % 2} B-LOC", ". O", ""]
    conll = tmp_path / "tags.conll"
    conll.write_text("\n".join(lines) + "\n", encoding="utf-8")
    quick = quickstart.plan(str(conll))
    assert quick.raw["task"] == "ner" and quick.raw["data"]["format"] == "conll"
    assert {s["name"] for s in quick.raw["strategies"]} == {"head-finetune", "lora"}
    assert "labels: LOC, PER" in quick.describe()
