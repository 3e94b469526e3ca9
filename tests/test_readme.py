"""Every shell command in README.md and README.zh-CN.md: both READMEs hold the same ones, every taskfit
command parses, and the quick ones run as written on a small CSV with the tiny test models
(TASKFIT_BACKBONES substitutes them for minilm and smollm2)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from taskfit.cli import build_parser
from tests.test_quickstart import reviews_csv

ROOT = Path(__file__).parent.parent
READMES = {"en": ROOT / "README.md", "zh": ROOT / "README.zh-CN.md"}
# The Chinese README may add commands on the Chinese built-in datasets (its own examples); all others match.
CHINESE_ONLY = ("zh-sentiment", "peoples-daily-ner")
# Commands that are not taskfit's: they install, or talk to a running server. Not run here (make demo is
# what `make test` itself does; curl needs `taskfit serve` running: tests/test_serving_hardening.py runs it).
EXTERNAL = ("make ", ". .venv/bin/activate", "python3 -m venv ", "pip install ", "curl ")
# Run as written, in this order, in one folder holding my.csv (a later one reads what an earlier one wrote).
QUICK = [
    "taskfit compare my.csv",
    "taskfit compare runs/my/taskfit.yaml",
    "taskfit init my.csv",
    "taskfit validate my.yaml",
    "taskfit runs list runs/my [--status failed] [--strategy lora]",
    ".venv/bin/taskfit datasets",
]


def commands(path: Path) -> list[str]:
    """The command lines of the fenced bash blocks, without comments."""
    out = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#\s.*$", "", line).strip()
            if line:
                out.append(line)
    return out


def argv(command: str) -> list[str]:
    """The arguments of a taskfit command: optional parts in brackets ([--onnx], [NAME]) and leading
    environment assignments dropped."""
    words = shlex.split(re.sub(r"\s\[[-A-Z][^\]]*\]", "", command))
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words.pop(0)
    assert words[0] in ("taskfit", ".venv/bin/taskfit"), command
    return words[1:]


def test_both_readmes_hold_the_same_commands_and_each_parses():
    en, zh = commands(READMES["en"]), commands(READMES["zh"])
    assert "taskfit compare my.csv" in en[:4], "the README's second step is taskfit compare my.csv"
    assert set(en) - set(zh) == set(), "commands in README.md missing from README.zh-CN.md"
    extra = set(zh) - set(en)
    assert all(any(name in c for name in CHINESE_ONLY) for c in extra), extra
    parser = build_parser()
    for command in dict.fromkeys(en + zh):
        if command.startswith(EXTERNAL):
            continue
        try:
            parser.parse_args(argv(command))
        except SystemExit:
            pytest.fail(f"a README command does not parse: {command}")
    assert all(q in en for q in QUICK), [q for q in QUICK if q not in en]


def test_readme_commands_run_on_tiny_data(tmp_path, tiny_bert_dir, tiny_llama_dir):
    reviews_csv(tmp_path / "my.csv", n=40)  # review text in comment_body, labels pos/neg in verdict
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TASKFIT_BACKBONES": f"minilm={tiny_bert_dir},smollm2={tiny_llama_dir}",
        "TASKFIT_NO_FETCH": "1",
    }
    for command in QUICK:
        proc = subprocess.run(
            [sys.executable, "-m", "taskfit", *argv(command)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        if command == "taskfit compare my.csv":
            assert "Best by accuracy" in proc.stdout and "taskfit compare runs/my/taskfit.yaml" in proc.stderr
        if command == "taskfit compare runs/my/taskfit.yaml":
            assert "already finished" in proc.stdout and " to run" not in proc.stdout


def few_csv(path: Path, n: int = 40) -> Path:
    """``n`` labelled texts in text/label columns (pos/neg, separable by word): the README's few.csv."""
    import csv

    reviews_csv(path, n=n)
    with path.open(encoding="utf-8") as f:
        rows = [{"text": r["comment_body"], "label": r["verdict"]} for r in csv.DictReader(f)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def readme_yaml(name: str) -> str:
    """The README's fenced YAML block of the config called ``name``."""
    blocks = re.findall(r"```yaml\n(.*?)```", READMES["en"].read_text(encoding="utf-8"), re.S)
    return next(b for b in blocks if f"name: {name}\n" in b)


def sentiment_aware_bert(tiny_bert_dir: Path, path: Path) -> Path:
    """The tiny random BERT with the toy's sentiment words pointing two opposite ways in its word embeddings:
    a stand-in for a pretrained backbone, whose embeddings already carry such a signal. (The random one, with
    head-finetune's frozen embeddings, cannot learn the toy from 32 texts: honestly cross-validated it sits on
    the majority line and nothing is recommended.)"""
    import shutil

    import torch
    from transformers import AutoTokenizer, BertModel

    from tests.conftest import WORDS

    shutil.copytree(tiny_bert_dir, path)
    model = BertModel.from_pretrained(path)
    ids = AutoTokenizer.from_pretrained(path).convert_tokens_to_ids
    words = list(WORDS)
    with torch.no_grad():
        table = model.embeddings.word_embeddings.weight
        for sign, group in (
            (1.0, words[0:6]),
            (-1.0, words[6:12]),
        ):  # reviews_csv's positive / negative words
            for w in group:
                table[ids(w)] = sign * 2.0
    model.save_pretrained(path)
    return path


def test_readme_few_labels_section_runs_as_written(tmp_path, tiny_bert_dir, tiny_llama_dir):
    """ "Only a few dozen labels, no dev or test?": its config and commands, as written, on 40 labels."""
    import json

    few = [c for c in commands(READMES["en"]) if "few" in c]
    assert few == ["taskfit compare few.yaml", "taskfit serve runs/few"], few
    zh = re.findall(r"```yaml\n(.*?)```", READMES["zh"].read_text(encoding="utf-8"), re.S)
    strip = lambda text: [re.sub(r"\s+#\s.*$", "", line) for line in text.splitlines()]  # noqa: E731
    assert any(strip(b) == strip(readme_yaml("few")) for b in zh), "README.zh-CN.md's few.yaml differs"
    few_csv(tmp_path / "few.csv")
    (tmp_path / "few.yaml").write_text(readme_yaml("few"), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TASKFIT_BACKBONES": f"minilm={sentiment_aware_bert(tiny_bert_dir, tmp_path / 'bert')},"
        f"smollm2={tiny_llama_dir}",
        "TASKFIT_NO_FETCH": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "taskfit", *argv(few[0])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "the cross-validated estimate is the only estimate" in proc.stdout
    card = json.loads((tmp_path / "runs" / "few" / "final" / "final.json").read_text(encoding="utf-8"))
    assert card["labelled_examples"] == 40
    # what `taskfit serve runs/few` loads: the final model (tests/test_truefew.py serves it on loopback)
    from taskfit.strategies.saved import find_model_dir

    assert find_model_dir(tmp_path / "runs" / "few") == tmp_path / "runs" / "few" / "final" / "model"
