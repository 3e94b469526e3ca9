"""task: ner — readers, tag schemes, sub-token alignment (multi-piece words, CJK under byte-level BPE, windows
over the model limit), seqeval figures on a hand-checked fixture, the People's Daily conversion, generative
answer parsing, the strategies on tiny random models, and a compare grid served over HTTP."""

from __future__ import annotations

import json
import random

import pytest

from taskfit.config import validate_config
from taskfit.data.ner import (
    convert_tags,
    entities_of,
    from_text,
    from_tokens,
    read_conll,
    read_ner_jsonl,
    tag_spans,
)
from taskfit.errors import TaskfitError
from taskfit.evaluation.ner_metrics import ner_metrics
from taskfit.models.token_alignment import IGNORE, continuation, encode_words, merge_predictions
from tests.conftest import WORDS


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A WordPiece tokenizer where 'unbelievably' is three pieces and 'york' one."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "john", "lives", "in", "new", "york", "un", "##believ"]
    vocab += ["##ably", "smith", ".", "a"]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})


# ---------------------------------------------------------------------------------------------------
# Readers and schemes


def test_conll_reader_tabs_spaces_docstart_and_blank_lines(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(
        "-DOCSTART- -X- O O\n\nJohn\tB-PER\nSmith\tI-PER\nlives O\nin O\n\n\nParis NNP B-LOC\n.\tO\n",
        encoding="utf-8",
    )
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [("John", "Smith", "lives", "in"), ("Paris", ".")]
    assert sentences[0].text == "John Smith lives in"
    assert sentences[1].tags == ("B-LOC", "O")  # the tag is the last column
    assert sentences[0].source == f"{path}:3"
    (tmp_path / "bad.conll").write_text("John B-PER\nSmith\n", encoding="utf-8")
    with pytest.raises(TaskfitError, match=r"bad.conll:2: expected 'token tag'"):
        read_conll(tmp_path / "bad.conll")
    (tmp_path / "odd.conll").write_text("John PERSON\n", encoding="utf-8")
    with pytest.raises(TaskfitError, match=r"odd.conll:1: tag 'PERSON' is not O or B-/I-"):
        read_conll(tmp_path / "odd.conll")


def test_chinese_conll_joins_characters_without_spaces(tmp_path):
    path = tmp_path / "zh.conll"
    path.write_text("江 B-PER\n泽 I-PER\n民 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n", encoding="utf-8")
    (s,) = read_conll(path)
    assert s.text == "江泽民在北京"
    assert [e.as_dict() for e in entities_of(s, s.tags)] == [
        {"type": "PER", "text": "江泽民", "start": 0, "end": 3},
        {"type": "LOC", "text": "北京", "start": 4, "end": 6},
    ]


def test_jsonl_tokens_tags_and_text_entities(tmp_path):
    from taskfit.config import ColumnsConfig

    path = tmp_path / "data.jsonl"
    rows = [
        {"tokens": ["Acme", "Corp", "hired", "Ann"], "tags": ["S-ORG", "O", "O", "S-PER"]},  # IOBES in
        {"text": "Ann moved to New York.", "entities": [{"start": 13, "end": 21, "type": "LOC"}]},
        {"text": "北京欢迎你", "entities": [{"start": 0, "end": 2, "label": "LOC", "text": "北京"}]},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    a, b, c = read_ner_jsonl(path, ColumnsConfig())
    assert a.tags == ("B-ORG", "O", "O", "B-PER")  # stored as BIO
    assert b.tokens == ("Ann", "moved", "to", "New", "York", ".")
    assert b.tags == ("O", "O", "O", "B-LOC", "I-LOC", "O")
    assert c.tokens == tuple("北京欢迎你") and c.tags[:3] == ("B-LOC", "I-LOC", "O")
    path.write_text(
        json.dumps({"text": "Ann", "entities": [{"start": 0, "end": 3, "type": "PER", "text": "Anne"}]})
    )
    with pytest.raises(
        TaskfitError, match=r"data.jsonl:1: entities\[0\] says 'Anne' but text\[0:3\] is 'Ann'"
    ):
        read_ner_jsonl(path, ColumnsConfig())


def test_an_entity_boundary_inside_a_word_splits_the_word():
    s = from_text("the UN-led talks", entities=[("ORG", 4, 6)])
    assert [s.text[a:b] for a, b in s.spans] == ["the", "UN", "-", "led", "talks"]
    assert entities_of(s, s.tags)[0].text == "UN"


@pytest.mark.parametrize(
    "scheme,expected",
    [
        ("bio", ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC"]),
        ("iobes", ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "I-LOC", "E-LOC"]),
        ("io", ["I-PER", "I-PER", "O", "I-LOC", "I-LOC", "I-LOC", "I-LOC"]),
    ],
)
def test_scheme_conversion_round_trips(scheme, expected):
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC"]
    assert convert_tags(bio, scheme) == expected
    if scheme != "io":  # IO cannot separate two adjacent entities of one type
        assert convert_tags(expected, "bio") == bio
    assert convert_tags(["I-PER", "I-PER", "O"], "bio") == ["B-PER", "I-PER", "O"]  # IOB1/IO in


# ---------------------------------------------------------------------------------------------------
# Alignment


def test_labels_land_on_the_first_piece_of_a_split_word(wordpiece):
    s = from_tokens(["john", "unbelievably", "new", "york"], ["B-PER", "B-LOC", "I-LOC", "I-LOC"])
    ids = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}
    tag_ids = [ids[t] for t in s.tags]
    enc = encode_words(wordpiece, s.text, s.spans, tag_ids, max_length=32)
    (w,) = enc.windows
    pieces = wordpiece.convert_ids_to_tokens(w.input_ids)
    assert pieces == ["[CLS]", "john", "un", "##believ", "##ably", "new", "york", "[SEP]"]
    assert w.labels == [IGNORE, 1, 3, IGNORE, IGNORE, 4, 4, IGNORE]
    everything = encode_words(wordpiece, s.text, s.spans, tag_ids, 32, label_all=True, inside_id={1: 2, 3: 4})
    assert everything.windows[0].labels == [IGNORE, 1, 3, 4, 4, 4, 4, IGNORE]  # B-LOC continues as I-LOC
    # predictions read back from the first pieces only
    predicted = [0, 1, 3, 0, 0, 4, 4, 0]
    assert merge_predictions(enc, [predicted]) == [1, 3, 4, 4]


def test_cjk_under_byte_level_bpe_labels_the_first_byte_token_of_each_character(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    s = from_tokens(list("江泽民在北京"), ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"])
    tag_ids = [{"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}[t] for t in s.tags]
    enc = encode_words(tok, s.text, s.spans, tag_ids, max_length=64)
    (w,) = enc.windows
    offsets = tok(s.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert len(offsets) > len(s.text)  # several byte tokens per character
    shift = len(w.input_ids) - len(offsets)  # a BOS, if the tokenizer adds one
    labelled = [(pos, lab) for pos, lab in enumerate(w.labels) if lab != IGNORE]
    assert [lab for _, lab in labelled] == tag_ids
    for (pos, _), (start, _) in zip(labelled, s.spans):  # each label sits on its character's first token
        assert offsets[pos - shift][0] == start
        assert pos - shift == 0 or offsets[pos - shift - 1][0] < start
    assert not enc.shared
    # position="last" (a causal LM's default): each label sits on its character's last token instead
    last = encode_words(tok, s.text, s.spans, tag_ids, max_length=64, position="last").windows[0]
    labelled = [(pos, lab) for pos, lab in enumerate(last.labels) if lab != IGNORE]
    assert [lab for _, lab in labelled] == tag_ids
    for (pos, _), (_, end) in zip(labelled, s.spans):
        assert offsets[pos - shift][1] == end
        assert pos - shift == len(offsets) - 1 or offsets[pos - shift + 1][1] > end
    perfect = [max(lab, 0) for lab in last.labels]
    assert (
        merge_predictions(encode_words(tok, s.text, s.spans, None, 64, position="last"), [perfect]) == tag_ids
    )


def test_a_token_over_two_characters_gives_the_second_a_continuation(wordpiece):
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(
        vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "12", "月"])}
    )
    s = from_tokens(["1", "2", "月"], ["O", "O", "O"])
    s = from_text("12月")  # words by character class: '12' is one word here, so split it by hand below
    s = type(s)(
        text="12月", tokens=("1", "2", "月"), spans=((0, 1), (1, 2), (2, 3)), tags=("B-X", "I-X", "O")
    )
    enc = encode_words(tok, s.text, s.spans, [1, 2, 0], max_length=16)
    assert enc.shared == [1]  # '2' has no token of its own
    tags = continuation(["B-X", "O", "O"], enc)
    assert tags == ["B-X", "I-X", "O"]
    last = encode_words(tok, s.text, s.spans, [1, 2, 0], max_length=16, position="last")
    assert last.shared == [1] and continuation(["B-X", "O", "O"], last) == tags  # '12' ends both words


def test_sentences_longer_than_the_limit_are_windowed_and_merged_back(wordpiece):
    rng = random.Random(0)
    words = [rng.choice(["john", "lives", "in", "new", "york", "unbelievably", "smith"]) for _ in range(60)]
    tags = [rng.choice(["O", "B-PER", "I-PER"]) for _ in words]
    s = from_tokens(words, tags)
    tag_ids = [{"O": 0, "B-PER": 1, "I-PER": 2}[t] for t in tags]
    enc = encode_words(wordpiece, s.text, s.spans, tag_ids, max_length=16, stride=4)
    assert len(enc.windows) > 4
    assert all(len(w.input_ids) <= 16 for w in enc.windows)
    # every word is labelled in some window, and a perfect per-window prediction merges into the gold tags
    seen = {w for window in enc.windows for w in window.first_of.values()}
    assert seen == set(range(len(words)))
    assert merge_predictions(enc, [[max(lab, 0) for lab in w.labels] for w in enc.windows]) == tag_ids
    # the merge keeps the window where the word has the most context
    conflicting = [[0] * len(w.input_ids) for w in enc.windows]
    assert merge_predictions(enc, conflicting) == [0] * len(words)


def test_predicted_entities_map_back_to_exact_character_offsets():
    s = from_text("Dr. Ann  Lee visited 北京 and  New York.")
    tags = ["O"] * len(s.tokens)
    idx = {tok: i for i, tok in enumerate(s.tokens)}
    tags[idx["Ann"]], tags[idx["Lee"]] = "B-PER", "I-PER"
    tags[idx["北"]], tags[idx["京"]] = "B-LOC", "I-LOC"
    tags[idx["New"]], tags[idx["York"]] = "B-LOC", "I-LOC"
    found = [e.as_dict() for e in entities_of(s, tags)]
    for e in found:
        assert s.text[e["start"] : e["end"]] == e["text"]
    assert [e["text"] for e in found] == ["Ann  Lee", "北京", "New York"]
    assert found[0]["start"] == 4 and found[2]["end"] == len(s.text) - 1


# ---------------------------------------------------------------------------------------------------
# seqeval on a hand-checked fixture


def test_seqeval_figures_reproduce_a_hand_count():
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC", "O"],
        ["B-ORG", "I-ORG", "O", "B-PER", "O"],
        ["O", "B-LOC", "I-LOC", "O", "O"],
    ]
    pred = [
        ["B-PER", "I-PER", "O", "B-LOC", "O"],  # 2 correct
        [
            "B-ORG",
            "O",
            "O",
            "I-PER",
            "O",
        ],  # ORG too short (wrong); I-PER after O: a PER by default, not strict
        ["O", "B-LOC", "I-LOC", "O", "B-PER"],  # LOC right, one spurious PER
    ]
    m = ner_metrics(gold, pred)
    # default: gold 5 entities (PER 2, LOC 2, ORG 1); predicted 6; correct PER 2, LOC 2 -> 4
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["recall"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    assert m["per_type"]["PER"]["precision"] == pytest.approx(2 / 3)
    assert m["per_type"]["PER"]["recall"] == pytest.approx(1.0)
    assert m["per_type"]["ORG"]["f1"] == 0.0
    assert m["f1_LOC"] == pytest.approx(1.0)
    # strict: the I-PER after O is no entity: predicted 5, correct 3
    assert m["strict_precision"] == pytest.approx(3 / 5)
    assert m["strict_recall"] == pytest.approx(3 / 5)
    assert m["token_accuracy"] == pytest.approx(12 / 15)  # row 2: I-ORG and B-PER missed; row 3: last O


# ---------------------------------------------------------------------------------------------------
# People's Daily


def test_peoples_daily_conversion_merges_names_handles_brackets_and_splits_sentences():
    from taskfit.data.peoples_daily import convert_line

    line = (
        "19980101-01-001-001/m  江/nr  泽民/nr  在/p  北京/ns  会见/v  [中央/n  人民/n  广播/vn  电台/n]nt  "
        "记者/n  。/w  [新华/nz  社/n]n  报道/v  ！/w  李/nr  鹏/nr  、/w  朱/nr  镕基/nr"
    )
    first, second, third = convert_line(line, "199801.txt:1")
    assert first.text == "江泽民在北京会见中央人民广播电台记者。"
    assert [(e.type, e.text) for e in entities_of(first, first.tags)] == [
        ("PER", "江泽民"),
        ("LOC", "北京"),
        ("ORG", "中央人民广播电台"),
    ]
    assert second.text == "新华社报道！" and set(second.tags) == {"O"}  # a non-entity bracket: plain tokens
    assert [(e.type, e.text) for e in entities_of(third, third.tags)] == [("PER", "李鹏"), ("PER", "朱镕基")]
    assert first.source == "199801.txt:1#1"


@pytest.mark.integration
def test_peoples_daily_builtin_has_fixed_disjoint_splits():
    from taskfit.data.catalog import load_builtin, normalise

    ds = load_builtin("peoples-daily-ner")
    assert len(ds.train) > 30_000 and len(ds.test) > 4_000
    texts = [{normalise(e.text) for e in split} for split in (ds.train, ds.dev, ds.test)]
    assert not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    counts = {
        t: sum(1 for e in ds.test for k, _, _ in tag_spans(e.tags) if k == t) for t in ("PER", "LOC", "ORG")
    }
    assert counts["LOC"] > counts["PER"] > counts["ORG"] > 100
    assert "nr -> PER" in ds.summary() and "test  entities:" in ds.summary()


# ---------------------------------------------------------------------------------------------------
# Generative NER: answers parsed back into spans


def test_generative_answers_are_parsed_into_offsets_and_failures_counted():
    from taskfit.strategies.ner_prompting import entities_to_tags, parse_answer

    text = "Ann met Bob and Ann in Paris."
    types = {"per": "PER", "person": "PER", "loc": "LOC"}
    answer = "PER: Ann\nperson: Bob\n- PER: Ann\nLOC: Paris\nORG: Acme\nnonsense\nPER: Zed"
    entities, counts = parse_answer(answer, text, types)
    assert [(e.type, e.start, e.end) for e in entities] == [
        ("PER", 0, 3),
        ("PER", 8, 11),
        ("PER", 16, 19),  # the second 'Ann' is the second mention, not the first again
        ("LOC", 23, 28),
    ]
    assert counts == {"lines": 7, "unparseable": 2, "not_found": 1}  # ORG unknown + 'nonsense'; Zed absent
    assert parse_answer("none", text, types) == ([], {"lines": 0, "unparseable": 0, "not_found": 0})
    s = from_text(text)
    assert entities_to_tags(s, entities)[:3] == ["B-PER", "O", "B-PER"]


# ---------------------------------------------------------------------------------------------------
# Strategies on tiny random models, a compare grid, and the server


def _toy_sentences(n: int, seed: int = 0) -> list:
    """Entity words are fixed: 'city' is LOC, 'person' starts a PER ('person who'), the rest is O."""
    rng = random.Random(seed)
    filler = [w for w in WORDS[:30] if w not in ("city", "person", "who")]
    out = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(4, 8)):
            r = rng.random()
            if r < 0.2:
                tokens.append("city"), tags.append("B-LOC")
            elif r < 0.35:
                tokens += ["person", "who"]
                tags += ["B-PER", "I-PER"]
            else:
                tokens.append(rng.choice(filler)), tags.append("O")
        out.append((tokens, tags))
    return out


def _write_conll(path, sentences) -> str:
    path.write_text("\n\n".join("\n".join(f"{t}\t{g}" for t, g in zip(*s)) for s in sentences) + "\n")
    return str(path)


def test_head_finetune_learns_toy_tags_and_reloads(tiny_bert_dir, tmp_path):
    from taskfit.config import NerHeadFinetuneConfig
    from taskfit.strategies import Context, load_strategy
    from taskfit.strategies.ner import NerTagger

    sentences = [from_tokens(t, g) for t, g in _toy_sentences(60)]
    cfg = NerHeadFinetuneConfig(
        name="head-finetune", backbone=str(tiny_bert_dir), epochs=8, lr=2e-3, head_lr=1e-2, patience=8
    )
    s = NerTagger(cfg, Context(labels=["LOC", "PER"]))
    assert s.position == "first"  # label_token auto: an encoder reads a word off its first token
    s.fit(sentences[:50], sentences[50:])
    test = sentences[50:]
    predicted = s.predict(test)
    m = ner_metrics([list(e.tags) for e in test], [p["tags"] for p in predicted])
    assert m["f1"] > 0.9
    s.save(tmp_path / "model")
    again = load_strategy(tmp_path / "model").predict(test)
    assert [p["tags"] for p in again] == [p["tags"] for p in predicted]


@pytest.mark.parametrize("name", ["lora", "bitfit", "adapter"])
def test_parameter_efficient_taggers_train_only_their_part_and_reload(name, tiny_bert_dir, tmp_path):
    from taskfit.config import NER_STRATEGY_CONFIGS
    from taskfit.strategies import Context, build_strategy, load_strategy

    extra = {"target_modules": ["query", "value"]} if name == "lora" else {}
    cfg = NER_STRATEGY_CONFIGS[name](
        name=name, backbone=str(tiny_bert_dir), epochs=1, scheme="iobes", **extra
    )
    s = build_strategy(cfg, Context(labels=["LOC", "PER"]))
    trained, total = s.trainable_parameters()
    assert 0 < trained < total / 2
    sentences = [from_tokens(t, g) for t, g in _toy_sentences(12)]
    s.fit(sentences[:8], sentences[8:])
    before = [p["tags"] for p in s.predict(sentences[8:])]
    assert all(t == "O" or t[:2] in ("B-", "I-", "E-", "S-") for tags in before for t in tags)
    s.save(tmp_path / name)
    assert [p["tags"] for p in load_strategy(tmp_path / name).predict(sentences[8:])] == before


def test_causal_lm_tagger_runs_on_left_context(tiny_llama_dir):
    from taskfit.config import NerLoraConfig
    from taskfit.strategies import Context
    from taskfit.strategies.ner import NerTagger

    cfg = NerLoraConfig(name="lora", backbone=str(tiny_llama_dir), epochs=1, max_length=12, stride=2)
    s = NerTagger(cfg, Context(labels=["LOC", "PER"]))
    assert s.position == "last"  # label_token auto: a causal LM reads a word off its last token
    sentences = [from_tokens(t, g) for t, g in _toy_sentences(6)]
    s.fit(sentences[:4], sentences[4:])
    long = from_tokens(["city"] * 30, ["B-LOC"] * 30)
    (p,) = s.predict([long])
    assert len(p["tags"]) == 30 and s.stats["sentences_split"] == 1  # windowed, not truncated


def test_a_tagger_saved_before_label_token_existed_reloads_reading_first_tokens(tiny_llama_dir, tmp_path):
    from taskfit.config import NerLoraConfig
    from taskfit.strategies import Context, load_strategy
    from taskfit.strategies.base import STRATEGY_FILE
    from taskfit.strategies.ner import NerTagger

    cfg = NerLoraConfig(name="lora", backbone=str(tiny_llama_dir), epochs=1)
    s = NerTagger(cfg, Context(labels=["LOC", "PER"]))
    s.fit([from_tokens(t, g) for t, g in _toy_sentences(4)], [])
    s.save(tmp_path / "new")
    assert load_strategy(tmp_path / "new").position == "last"
    saved = json.loads((tmp_path / "new" / STRATEGY_FILE).read_text(encoding="utf-8"))
    del saved["strategy"]["label_token"]  # what an earlier taskfit wrote
    (tmp_path / "new" / STRATEGY_FILE).write_text(json.dumps(saved), encoding="utf-8")
    assert load_strategy(tmp_path / "new").position == "first"


def test_compare_grid_ner_and_server_answers_entities_with_offsets(tiny_bert_dir, tiny_llama_dir, tmp_path):
    import httpx

    from taskfit.compare.engine import run_experiment
    from taskfit.serving.predictor import Predictor
    from tests.test_serving import serving

    train = _write_conll(tmp_path / "train.conll", _toy_sentences(40, 1))
    test = _write_conll(tmp_path / "test.conll", _toy_sentences(10, 2))
    raw = {
        "name": "ner-grid",
        "task": "ner",
        "data": {"train": train, "test": test, "shots": 16},
        "strategies": [
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 2},
            {"name": "in-context", "backbone": str(tiny_llama_dir), "demos": 1, "max_new_tokens": 8},
        ],
    }
    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    rows = {s["strategy"]: s for s in summary["strategies"]}
    assert rows["head-finetune"]["runs"] == 1 and rows["in-context"]["runs"] == 1
    assert "f1_PER_mean" in rows["head-finetune"] and "strict_f1_mean" in rows["in-context"]
    cell = tmp_path / "out" / "head-finetune"
    (metrics_path,) = cell.rglob("metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics["per_type"]) <= {"LOC", "PER"} and metrics["train_examples"] == 16
    assert metrics["alignment"]["sentences"] == 10
    (icl,) = (tmp_path / "out" / "in-context").rglob("metrics.json")
    parsing = json.loads(icl.read_text())["parsing"]
    assert parsing["answers"] == 10  # every answer was read, whatever the random LM wrote
    row = json.loads((metrics_path.parent / "predictions.jsonl").read_text().splitlines()[0])
    assert {"text", "gold", "predicted"} <= set(row)
    assert "| F1 LOC |" in (tmp_path / "out" / "results.md").read_text()

    from taskfit.data.readers import Columns
    from taskfit.serving.batch import predict_file

    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "a city and a person who"}) + "\n")
    predict_file(metrics_path.parent, tmp_path / "in.jsonl", tmp_path / "out.jsonl", Columns(label=None))
    (written,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert isinstance(written["entities"], list) and written["text"] == "a city and a person who"

    predictor = Predictor.load(metrics_path.parent)
    assert predictor.task == "ner"
    with serving(predictor) as url:
        text = "the person who saw a city"
        response = httpx.post(f"{url}/v1/predict", json={"inputs": [{"text": text}]}, timeout=30)
    assert response.status_code == 200
    (prediction,) = response.json()["predictions"]
    for e in prediction["entities"]:
        assert text[e["start"] : e["end"]] == e["text"] and e["type"] in ("LOC", "PER")


def test_compare_data_check_warns_with_the_unknown_token_rate(tiny_bert_dir, tmp_path):
    from taskfit.config import DataConfig
    from taskfit.data.inspect import InspectReport, check_pools
    from taskfit.data.prepare import load_ner_pools

    path = tmp_path / "zh.conll"
    path.write_text("江 B-PER\n泽 I-PER\n民 I-PER\n说 O\n好 O\n\n北 B-LOC\n京 I-LOC\n好 O\n" * 3)
    data = DataConfig(train=str(path), shots=2)
    report = check_pools(data, load_ner_pools(data), [str(tiny_bert_dir)], 64, InspectReport())
    (unk,) = [f for f in report.problems if f.check.endswith(".unknown")]
    assert "100.00% of tokens are [UNK]" in unk.message  # the tiny vocabulary has no Chinese at all
    assert not any("balance" in f.check for f in report.findings)  # no classes in ner


def test_ner_config_errors_name_the_task():
    base = {"task": "ner", "data": {"dataset": "peoples-daily-ner"}}
    with pytest.raises(TaskfitError, match="unknown strategy 'contrastive' \\(task: ner\\)"):
        validate_config({**base, "strategies": [{"name": "contrastive"}]})
    with pytest.raises(TaskfitError, match="'strategies.0.sceme'. Did you mean 'scheme'"):
        validate_config({**base, "strategies": [{"name": "lora", "sceme": "bio"}]})
    cfg = validate_config({**base, "metric": "strict_f1", "strategies": [{"name": "lora"}]})
    assert cfg.strategies[0].max_length == 128


def test_ner_small_k_defaults_leave_classification_alone():
    from taskfit.config import HeadFinetuneConfig, LoraStrategyConfig, NerHeadFinetuneConfig, NerLoraConfig

    ner_head, ner_lora = NerHeadFinetuneConfig(name="head-finetune"), NerLoraConfig(name="lora")
    assert (ner_head.lr, ner_head.head_lr, ner_head.epochs, ner_head.patience) == (5e-5, 5e-3, 20, 4)
    assert (ner_lora.lr, ner_lora.head_lr, ner_lora.epochs, ner_lora.patience) == (5e-3, 5e-3, 20, 4)
    assert ner_head.label_token == ner_lora.label_token == "auto"
    head, lora = HeadFinetuneConfig(name="head-finetune"), LoraStrategyConfig(name="lora")
    assert (head.head_lr, head.epochs, head.patience, lora.lr) == (2e-3, 30, 8, 5e-3)
    with pytest.raises(TaskfitError, match="label_token"):
        validate_config(
            {
                "task": "ner",
                "data": {"dataset": "peoples-daily-ner"},
                "strategies": [{"name": "lora", "label_token": "middle"}],
            }
        )
