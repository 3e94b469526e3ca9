"""Tiny random models built from configs (2 layers, hidden 32), saved as local folders: the same code path a
user takes with a hub id or a folder, in milliseconds."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

WORDS = (
    "good great fun loved wonderful superb bad awful boring hated terrible dull movie film plot actors "
    "the a an is was it this and but not very story review sentiment positive negative question answer "
    "who what where when how many city person number location"
).split()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *list("abcdefghijklmnopqrstuvwxyz"),
        ":",
        ".",
        "!",
    ]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert tokenizer.tokenize("good movie") == ["good", "movie"]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        architectures=["BertModel"],
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    rng = random.Random(0)
    corpus = [" ".join(rng.choices(WORDS, k=12)) for _ in range(300)]
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        architectures=["LlamaForCausalLM"],
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def shipped_example(name: str, task: str):
    """An example config under examples/ (its data paths made absolute) and the pools it loads."""
    from taskfit.config import load_config
    from taskfit.data.prepare import load_pools

    root = Path(__file__).parent.parent
    config = load_config(root / "examples" / name)
    data = config.data.model_copy(
        update={k: str(root / getattr(config.data, k)) for k in ("train", "dev", "test")}
    )
    return config, data, load_pools(data, task)


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    """A separable toy sentiment set: positive texts use positive words, negative ones negative words."""
    rng = random.Random(1)
    pos, neg, filler = WORDS[0:6], WORDS[6:12], WORDS[12:22]
    rows = []
    for i in range(60):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(pos if label == "positive" else neg, 2) + rng.sample(filler, 4)
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i}", "label": label})
    return write_csv(tmp_path / "train.csv", rows)


@pytest.fixture
def pairs_csv(tmp_path):
    """Input: three words; target: the same words reversed (learnable, and checkable by eye)."""
    rng = random.Random(0)
    rows = []
    for _ in range(90):
        words = rng.sample(WORDS[:14], 3)
        rows.append({"text": " ".join(words), "target": " ".join(reversed(words))})
    return write_csv(tmp_path / "pairs.csv", rows)
