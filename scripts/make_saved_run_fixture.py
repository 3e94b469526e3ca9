"""Write tests/fixtures/saved_runs/: runs saved by an older taskfit, with the predictions it made, so that the
tests can check that today's code still loads them and predicts the same (issue 17: saved runs keep working).

Run with the OLD code on the path, e.g. from a checkout of commit 132cf1b (before the registry redesign):
    PYTHONPATH=/path/to/old/src python scripts/make_saved_run_fixture.py tests/fixtures/saved_runs
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

WORDS = "good great fun loved bad awful boring hated movie film the a is was 张 三 李 四 北 京 人 好".split()
LABELS = ["negative", "positive"]


def tiny_bert(path: Path) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        architectures=["BertModel"],
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main(out: Path) -> None:
    from taskfit.config import strategy_configs
    from taskfit.data.ner import NerExample
    from taskfit.data.readers import Example
    from taskfit.strategies import BackboneCache, Context, build_strategy

    shutil.rmtree(out, ignore_errors=True)
    bert = tiny_bert(out / "tiny-bert")
    texts = [f"{w} movie" for w in ("good great", "bad awful", "loved fun", "hated boring")]
    train = [Example(t, LABELS[i % 2 == 0]) for i, t in enumerate(texts * 3)]
    sentences = [
        NerExample(
            text="张三北京",
            tokens=tuple("张三北京"),
            spans=tuple((i, i + 1) for i in range(4)),
            tags=("B-PER", "I-PER", "B-LOC", "I-LOC"),
        ),
        NerExample(
            text="李四好人",
            tokens=tuple("李四好人"),
            spans=tuple((i, i + 1) for i in range(4)),
            tags=("B-PER", "I-PER", "O", "O"),
        ),
    ]
    runs = {
        ("classification", "head-finetune"): {},
        ("classification", "lora"): {"lr": 5e-3},
        ("classification", "bitfit"): {},
        ("ner", "head-finetune"): {},
        ("ner", "lora"): {},
    }
    expected = {}
    for (task, name), extra in runs.items():
        config = strategy_configs(task)[name].model_validate(
            {"name": name, "backbone": str(bert), "epochs": 2, "batch_size": 4, **extra}
        )
        labels = ["LOC", "PER"] if task == "ner" else LABELS
        strategy = build_strategy(
            config, Context(labels, None, seed=0, backbones=BackboneCache(device="cpu"))
        )
        data = sentences if task == "ner" else train
        strategy.fit(data * 2, data)
        folder = out / f"{task}-{name}"
        strategy.save(folder / "model")
        predicted = strategy.predict(data)
        if task == "ner":
            expected[folder.name] = [p["tags"] for p in predicted]
        else:
            expected[folder.name] = predicted.probs.tolist()
    (out / "expected.json").write_text(json.dumps(expected, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
