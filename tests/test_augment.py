"""Augmentation of the K-shot training sample: each operation does what it says, copies are deterministic per
seed and keep their label, dev/test are never touched, WordNet's absence is said and worked around."""

import json
import random
import re
from collections import Counter

import pytest

from taskfit.config import AugmentConfig, ParaphraseConfig, validate_config
from taskfit.data import augment as aug
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError

from .test_compare import grid
from .test_strategies import toy

CJK = re.compile(r"^[\u4e00-\u9fff，。！？]+$")


@pytest.fixture
def no_wordnet(monkeypatch):
    monkeypatch.setattr(aug, "wordnet", lambda: None)


class FakeLemma:
    def __init__(self, name):
        self._name = name

    def name(self):
        return self._name


SYNONYMS = {"good": ["good", "beneficial", "full_of_life"], "movie": ["film", "movie"]}


@pytest.fixture
def fake_wordnet(monkeypatch):
    class Synset:
        def __init__(self, names):
            self.names = names

        def lemmas(self):
            return [FakeLemma(n) for n in self.names]

    class WordNet:
        def synsets(self, word):
            names = SYNONYMS.get(word)
            return [Synset(names)] if names else []

    monkeypatch.setattr(aug, "wordnet", lambda: WordNet())


@pytest.mark.parametrize("seed", [0, 7])
def test_word_operations_keep_or_reuse_the_texts_own_words(seed):
    text = "the plot was good but the actors were awful and dull"
    words = Counter(text.split())
    rng = random.Random(seed)
    swapped = aug.swap_words(text, rng, 0.1)
    assert Counter(swapped.split()) == words and swapped != text
    deleted = aug.delete_words(text, rng, 0.2)
    assert len(deleted.split()) == len(text.split()) - 2 and not Counter(deleted.split()) - words
    inserted = aug.insert_words(text, rng, 0.2)
    assert len(inserted.split()) == len(text.split()) + 2 and set(inserted.split()) == set(words)
    assert aug.delete_words("alone", rng, 0.5) == "alone"  # never an empty text


def test_character_operations_keep_chinese_text_chinese():
    text = "这部电影的剧情非常精彩，演员也很出色。"
    chars = set(text)
    for seed in range(5):
        rng = random.Random(seed)
        swapped = aug.swap_chars(text, rng, 0.1)
        assert sorted(swapped) == sorted(text) and swapped != text and CJK.match(swapped)
        deleted = aug.delete_chars(text, rng, 0.1)
        assert len(deleted) == len(text) - 2 and set(deleted) <= chars and CJK.match(deleted)
        inserted = aug.insert_chars(text, rng, 0.1)
        assert len(inserted) == len(text) + 2 and set(inserted) == chars and CJK.match(inserted)


def test_copies_are_deterministic_per_seed_keep_labels_and_never_repeat_an_original(no_wordnet):
    train = toy(12)
    config = AugmentConfig(ops=["swap", "delete", "insert", "char_swap"], per_example=3, rate=0.2)
    a, records = aug.augment_examples(train, config, seed=0, say=lambda _: None)
    b, _ = aug.augment_examples(train, config, seed=0, say=lambda _: None)
    c, _ = aug.augment_examples(train, config, seed=1, say=lambda _: None)
    assert [e.text for e in a] == [e.text for e in b]
    assert [e.text for e in a] != [e.text for e in c]
    assert a[: len(train)] == train  # the originals first, untouched
    copies = a[len(train) :]
    assert 0 < len(copies) == len(records) <= 3 * len(train)
    originals = {e.text for e in train}
    for copy, record in zip(copies, records):
        source = train[record["source"]]
        assert copy.label == source.label == record["label"]
        assert copy.text == record["text"] and record["source_text"] == source.text
        assert copy.text not in originals and record["op"] in config.ops
    per_source = Counter((r["source"], r["text"]) for r in records)
    assert max(per_source.values()) == 1  # no duplicate copy of one source
    # a copy depends on its own (seed, example, copy) only: augmenting a prefix gives the same copies
    prefix, _ = aug.augment_examples(train[:4], config, seed=0, say=lambda _: None)
    assert [e.text for e in prefix[4:]] == [r["text"] for r in records if r["source"] < 4]
    assert AugmentConfig(ops=["swap"], seed=5).seed == 5
    pinned, _ = aug.augment_examples(train, AugmentConfig(ops=["swap"], seed=5), seed=0, say=lambda _: None)
    other_cell, _ = aug.augment_examples(
        train, AugmentConfig(ops=["swap"], seed=5), seed=9, say=lambda _: None
    )
    assert [e.text for e in pinned] == [e.text for e in other_cell]  # augment.seed overrides the cell's


def test_without_wordnet_synonyms_are_skipped_once_with_the_install_command(no_wordnet):
    said = []
    config = AugmentConfig(ops=["synonym", "swap"], per_example=2)
    examples, records = aug.augment_examples(toy(6), config, seed=0, say=said.append)
    assert len(said) == 1 and "python -m nltk.downloader wordnet" in said[0]
    assert records and {r["op"] for r in records} == {"swap"}
    with pytest.raises(TaskfitError, match="nltk.downloader wordnet.*add other operations"):
        aug.augment_examples(toy(6), AugmentConfig(ops=["synonym"]), seed=0)


def test_synonym_replacement_uses_wordnet_lemmas(fake_wordnet):
    rng = random.Random(0)
    out = aug.replace_synonyms("a good movie", rng, 0.5)  # 2 of 3 words; "a" is a stop word
    assert out.split()[0] == "a"
    assert out.split()[1] in {"beneficial", "full of life"} or out.split()[-1] == "film"
    assert out != "a good movie"
    assert aug.replace_synonyms("the and of", rng, 0.5) == "the and of"  # nothing to replace


def test_paraphrases_are_cleaned_and_rejected_when_useless():
    config = ParaphraseConfig()
    original = "a gorgeous and witty film"
    assert aug.clean_paraphrase('Here is the rewrite:\n"a lovely, clever movie"', original, config) == (
        "a lovely, clever movie"
    )
    assert aug.clean_paraphrase("A gorgeous and witty film", original, config) is None  # identical
    assert aug.clean_paraphrase("   ", original, config) is None
    assert aug.clean_paraphrase("film " * 40, original, config) is None  # far too long
    assert aug.clean_paraphrase("ok", original, config) is None  # far too short
    # what smollm2 wrote on mr: a label on the answer's one line, talk about the text, a phrase on repeat
    assert (
        aug.clean_paraphrase("Rewrite: a lovely, clever movie", original, config) == "a lovely, clever movie"
    )
    assert aug.clean_paraphrase('Paraphrased text: "a fine and clever film"', original, config) == (
        "a fine and clever film"
    )
    assert aug.clean_paraphrase("The original text is a reworded version of a film", original, config) is None
    stuck = "Downbeat, period perfect: downbeat, -period perfect -upbeat, period perfect - downbeat, period perfect"
    assert (
        aug.clean_paraphrase(stuck, "Downbeat, period perfect biopic hammers home a message.", config) is None
    )
    assert aug.clean_paraphrase("rewrites of a witty film are gorgeous", original, config) is not None


def test_paraphrase_op_uses_the_paraphraser_and_drops_rejections(no_wordnet):
    asked = []

    def paraphraser(texts, copies):
        asked.extend(zip(texts, copies))
        return [None if c == 0 else f"{t} indeed" for t, c in zip(texts, copies)]

    train = toy(4)
    _, records = aug.augment_examples(
        train, AugmentConfig(ops=["paraphrase"], per_example=2), seed=0, paraphraser=paraphraser
    )
    assert sorted(asked) == sorted((e.text, c) for e in train for c in (0, 1))
    assert [r["text"] for r in records] == [f"{e.text} indeed" for e in train]
    assert {r["op"] for r in records} == {"paraphrase"}


def test_llm_paraphraser_decodes_once_and_then_reads_its_cache(tiny_llama_dir, tmp_path):
    from taskfit.models.backbones import load_backbone

    backbone = load_backbone(str(tiny_llama_dir), "causal-lm")
    backbone.tokenizer.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant:{% endif %}"
    )

    class Backbones:
        gets = 0

        def get(self, name, kind=None):
            Backbones.gets += 1
            assert kind == "causal-lm"
            return backbone

    config = ParaphraseConfig(backbone="tiny", max_new_tokens=6, temperature=0.8)
    cache = tmp_path / aug.PARAPHRASE_CACHE
    texts, copies = ["good movie", "bad film", "good movie"], [0, 0, 1]
    first = aug.llm_paraphraser(config, 0, Backbones(), cache)(texts, copies)
    assert Backbones.gets == 1 and len(first) == 3
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert sorted((r["text"], r["copy"]) for r in rows) == sorted(zip(texts, copies))
    assert all(isinstance(r["raw"], str) for r in rows)

    class Unreachable:
        def get(self, name, kind=None):
            raise AssertionError("the cache should have answered")

    assert aug.llm_paraphraser(config, 0, Unreachable(), cache)(texts, copies) == first
    greedy = config.model_copy(update={"temperature": 0})
    aug.llm_paraphraser(greedy, 0, Backbones(), cache)(texts, copies)  # other settings: not from the cache
    assert Backbones.gets == 2


def test_a_cell_augments_only_its_training_sample_and_writes_augmented_jsonl(
    sentiment_csv, tiny_bert_dir, tmp_path, no_wordnet, capsys
):
    from taskfit.compare import run_experiment
    from taskfit.compare.plan import plan_cells

    raw = grid(sentiment_csv, tiny_bert_dir, seeds=[0])
    raw["data"]["shots"] = 4
    plain = dict(raw["strategies"][1])
    augmented = {
        **plain,
        "id": "head-finetune+eda",
        "augment": {"ops": ["swap", "delete", "synonym"], "per_example": 2},
    }
    raw["strategies"] = [plain, augmented]
    cfg = validate_config(raw)
    keys = [c.key for c in plan_cells(cfg, "x")]
    assert len(set(keys)) == 2  # augment is part of the cell key
    without = validate_config({**raw, "strategies": [plain]})
    assert plan_cells(without, "x")[0].key == keys[0]
    run_experiment(cfg, tmp_path / "out", isolate=False)
    base, eda = (
        tmp_path / "out/head-finetune/tiny-bert0/k4/seed-0",
        tmp_path / "out/head-finetune+eda/tiny-bert0/k4/seed-0",
    )
    assert not (base / aug.AUGMENTED_FILE).exists()
    records = [json.loads(line) for line in (eda / aug.AUGMENTED_FILE).read_text().splitlines()]
    metrics = json.loads((eda / "metrics.json").read_text())
    base_metrics = json.loads((base / "metrics.json").read_text())
    assert base_metrics["train_examples"] == 8
    assert metrics["train_examples"] == 8 + len(records) == 8 + metrics["augmented_examples"]
    assert 0 < len(records) <= 16 and {r["op"] for r in records} <= {"swap", "delete"}
    assert metrics["dev_examples"] == base_metrics["dev_examples"]
    # the sources are the cell's training sample; test (and dev) are exactly those of the plain cell
    sources = {r["source_text"] for r in records}
    assert len(sources) <= 8
    test_texts = [json.loads(line)["text"] for line in (eda / "predictions.jsonl").read_text().splitlines()]
    base_test = [json.loads(line)["text"] for line in (base / "predictions.jsonl").read_text().splitlines()]
    assert test_texts == base_test and not sources & set(test_texts)
    assert not {r["text"] for r in records} & set(test_texts)
    out = capsys.readouterr()
    assert out.out.count("nltk.downloader wordnet") == 1  # the grid says it once


def test_augment_is_refused_where_there_is_no_training_sample_to_augment():
    with pytest.raises(TaskfitError, match="'zero-shot' does not support 'augment:'.*head-finetune"):
        validate_config({"data": {"dataset": "mr"}, "strategies": [{"name": "zero-shot", "augment": {}}]})
    with pytest.raises(TaskfitError, match="lists an operation twice"):
        validate_config(
            {
                "data": {"dataset": "mr"},
                "strategies": [{"name": "lora", "augment": {"ops": ["swap", "swap"]}}],
            }
        )


def test_examples_keep_their_other_fields():
    train = [Example("good great fun movie", "positive", text_pair="a pair", source="f.csv:2")]
    out, records = aug.augment_examples(train, AugmentConfig(ops=["swap"], per_example=1), seed=0)
    assert out[1].text_pair == "a pair" and out[1].label == "positive" and records[0]["source"] == 0


@pytest.mark.integration
def test_smollm2_paraphrases_a_review(tmp_path):
    """The real path: the packaged chat model rewrites short reviews; accepted outputs differ from the input."""
    from taskfit.strategies.base import BackboneCache

    texts = [
        "the plot is nothing but boilerplate clichés from start to finish",
        "an utterly incompetent conclusion to a series that was never much of anything",
    ]
    config = ParaphraseConfig(temperature=0, max_new_tokens=40)
    out = aug.llm_paraphraser(config, 0, BackboneCache(device="cpu"), tmp_path / "p.jsonl")(texts, [0, 0])
    accepted = [(t, p) for t, p in zip(texts, out) if p is not None]
    assert accepted, out  # greedy smollm2 rewrites at least one of them
    for text, paraphrase in accepted:
        assert paraphrase.casefold() != text.casefold() and 0 < len(paraphrase) <= 2 * len(text)
