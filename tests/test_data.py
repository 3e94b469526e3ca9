import json
from collections import Counter

import pytest

from taskfit.config import DataConfig
from taskfit.data.catalog import load_builtin, normalise, split_records
from taskfit.data.prepare import k_shot, sample_splits
from taskfit.data.readers import Columns, Example, read_examples
from taskfit.errors import TaskfitError
from taskfit.tasks import load_pools

from .conftest import write_csv


def test_read_csv_tsv_jsonl(tmp_path):
    write_csv(tmp_path / "a.csv", [{"review": "nice, really", "y": "pos"}, {"review": "bad", "y": "neg"}])
    (tmp_path / "a.tsv").write_text("review\ty\nnice\tpos\nbad\tneg\n")
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"review": "nice", "y": 1}) + "\n\n" + json.dumps({"review": "bad", "y": 0}) + "\n"
    )
    cols = Columns(text="review", label="y")
    csv_rows = read_examples(str(tmp_path / "a.csv"), cols)
    assert [(e.text, e.label) for e in csv_rows] == [("nice, really", "pos"), ("bad", "neg")]
    assert [e.label for e in read_examples(str(tmp_path / "a.tsv"), cols)] == ["pos", "neg"]
    jl = read_examples(str(tmp_path / "a.jsonl"), cols)
    assert [e.label for e in jl] == ["1", "0"] and jl[1].source.endswith("a.jsonl:3")


def test_missing_file_suggests_nearby_name(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,b\n")
    with pytest.raises(TaskfitError, match=r"not found: .*trian.csv\. Did you mean 'train.csv'"):
        read_examples(str(tmp_path / "trian.csv"), Columns())


def test_wrong_column_lists_columns_found(tmp_path):
    write_csv(tmp_path / "d.csv", [{"review": "x", "sentiment": "pos"}])
    with pytest.raises(TaskfitError) as err:
        read_examples(str(tmp_path / "d.csv"), Columns(text="text", label="sentiment"))
    msg = str(err.value)
    assert "d.csv:2: column 'text' not found" in msg and "columns found: review, sentiment" in msg


def test_empty_text_names_the_line(tmp_path):
    write_csv(tmp_path / "d.csv", [{"text": "ok", "label": "a"}, {"text": "  ", "label": "b"}])
    with pytest.raises(TaskfitError, match=r"d.csv:3: empty text"):
        read_examples(str(tmp_path / "d.csv"), Columns())


def test_non_utf8_names_the_line(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"text,label\ngood,pos\ncaf\xe9 au lait,neg\n")
    with pytest.raises(TaskfitError, match=r"d.csv:3: bytes that are not UTF-8 at column 4"):
        read_examples(str(tmp_path / "d.csv"), Columns())


def test_bad_jsonl_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b",\n')
    with pytest.raises(TaskfitError, match=r"d.jsonl:2: not valid JSON"):
        read_examples(str(tmp_path / "d.jsonl"), Columns())


def test_hf_load_from_disk(tmp_path):
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence": ["good", "bad"], "label": [1, 0]}, features=features
            )
        }
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    rows = read_examples(f"{tmp_path / 'ds'}:train", Columns(text="sentence"), "hf")
    assert [(e.text, e.label) for e in rows] == [("good", "pos"), ("bad", "neg")]
    with pytest.raises(TaskfitError, match="name one"):
        read_examples(str(tmp_path / "ds"), Columns(text="sentence"), "hf")


def _examples(counts):
    return [Example(f"{lab} {i}", lab) for lab, n in counts.items() for i in range(n)]


def test_k_shot_is_balanced_and_deterministic():
    pool = _examples({"a": 30, "b": 20})
    s1 = k_shot(pool, 8, ["a", "b"], seed=3)
    assert Counter(e.label for e in s1) == {"a": 8, "b": 8}
    assert s1 == k_shot(pool, 8, ["a", "b"], seed=3)
    assert s1 != k_shot(pool, 8, ["a", "b"], seed=4)


def test_k_larger_than_smallest_class():
    with pytest.raises(TaskfitError, match=r"K=25 .* label 'b' \(20\)\. Nearest valid K: 20"):
        k_shot(_examples({"a": 30, "b": 20}), 25, ["a", "b"], seed=0)


def test_label_in_dev_not_in_train(tmp_path):
    write_csv(tmp_path / "train.csv", [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)])
    write_csv(tmp_path / "dev.csv", [{"text": "d", "label": "a"}, {"text": "e", "label": "c"}])
    cfg = DataConfig(train=str(tmp_path / "train.csv"), dev=str(tmp_path / "dev.csv"), shots=None)
    with pytest.raises(
        TaskfitError, match=r"dev.csv:3: label 'c' in dev does not occur in train \(labels: a, b\)"
    ):
        load_pools(cfg)


def test_user_data_without_dev_and_test_is_carved_and_stratified(sentiment_csv):
    cfg = DataConfig(train=str(sentiment_csv), shots=4, dev_shots=2)
    pools = load_pools(cfg)
    assert len(pools.test) == 12 and len(pools.dev) == 4 and len(pools.train) == 44
    assert not {e.text for e in pools.test} & {e.text for e in pools.train}
    splits = sample_splits(pools, cfg, seed=0)
    assert Counter(e.label for e in splits.train) == {"positive": 4, "negative": 4}
    assert len(splits.dev) == 4


def test_dedup_split_drops_conflicts_and_never_leaks():
    recs = [
        ("Great film", "pos", "1"),
        ("great   FILM", "pos", "2"),
        ("meh", "pos", "3"),
        ("Meh", "neg", "4"),
    ]
    recs += [(f"text {i}", "pos", str(i)) for i in range(200)]
    splits, dups, conflicts = split_records(recs)
    assert dups == 1 and conflicts == 2
    seen = [normalise(e.text) for s in splits.values() for e in s]
    assert len(seen) == len(set(seen)) == 201


@pytest.mark.parametrize("name", ["mr", "trec", "tweets-sentiment", "zh-sentiment"])
def test_builtin_datasets_have_fixed_leak_free_splits(name):
    ds = load_builtin(name)
    assert set(e.label for e in ds.train) == set(ds.card.labels)
    texts = [{normalise(e.text) for e in s} for s in (ds.train, ds.dev, ds.test)]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    again = load_builtin(name)
    assert [e.text for e in again.test] == [e.text for e in ds.test]
    assert 0.07 < len(ds.test) / (len(ds.train) + len(ds.dev) + len(ds.test)) < 0.13


def test_mr_card_counts():
    ds = load_builtin("mr")
    total = len(ds.train) + len(ds.dev) + len(ds.test)
    assert total == 10605 - 37 - 2  # rows - neutral (score 0) - duplicates
    assert "Rotten Tomatoes" in ds.summary()


def test_dev_with_a_rare_class_uses_all_of_it(tmp_path):
    rows = [{"text": f"a{i}", "label": "a"} for i in range(20)] + [
        {"text": f"b{i}", "label": "b"} for i in range(20)
    ]
    write_csv(tmp_path / "train.csv", rows)
    write_csv(
        tmp_path / "dev.csv",
        [{"text": f"da{i}", "label": "a"} for i in range(6)] + [{"text": "db", "label": "b"}],
    )
    cfg = DataConfig(
        train=str(tmp_path / "train.csv"),
        dev=str(tmp_path / "dev.csv"),
        test=str(tmp_path / "train.csv"),
        shots=4,
    )
    splits = sample_splits(load_pools(cfg), cfg, seed=0)
    assert Counter(e.label for e in splits.dev) == {"a": 4, "b": 1}
    assert any("fewer than 4" in n for n in splits.notes)
