"""`taskfit inspect`: each anomaly reproduced in a small hand-made file, named with its line and count."""

import json

import pytest

from taskfit.cli import main
from taskfit.config import DataConfig
from taskfit.data.inspect import InspectReport, check_examples, inspect_data, scan_file
from taskfit.data.readers import Example
from taskfit.tasks import load_pools


def by_check(report: InspectReport) -> dict:
    return {f.check: f for f in report.findings}


def test_an_unmatched_quote_that_swallows_records_is_found_at_its_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(
        "text,label\n"
        "good fun movie,positive\n"
        '"awful plot,negative\n'  # line 3: the quote never closes where it should
        "great film,positive\n"
        "boring story,negative\n"
        'he said "wow" loud,positive\n'
        "dull,negative\n"
        "one,two,three\n"  # line 8: three fields
    )
    report = InspectReport()
    scan_file(path, report)
    found = by_check(report)
    swallowed = found["parse.swallowed-records"]
    assert swallowed.count == 1 and swallowed.severity == "warning"
    assert swallowed.where[0].startswith(f"{path}:3: field 'text' spans 4 lines")
    assert "3 of its lines look like records" in swallowed.where[0]
    fields = found["parse.field-count"]
    assert fields.count == 1 and fields.where == [f"{path}:8: 3 fields, header has 2"]


def test_bom_mixed_line_endings_and_bad_bytes_with_line_numbers(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(
        b"\xef\xbb\xbftext,label\r\ngood,positive\r\nfine film,positive\nbad \xff thing,negative\nawful,negative\n"
    )
    report = InspectReport()
    scan_file(path, report)
    found = by_check(report)
    assert found["parse.bom"].severity == "info"
    assert "mixes line endings (2 CRLF, 3 LF)" in found["parse.line-endings"].message
    encoding = found["parse.encoding"]
    assert encoding.severity == "error" and encoding.count == 1
    assert encoding.where[0].startswith(f"{path}:4: column 5")


def ex(text, label, source):
    return Example(text, label, source=source)


def test_duplicates_leakage_and_conflicting_labels_are_counted():
    train = [
        ex("Good movie", "positive", "train.csv:2"),
        ex("Good movie", "positive", "train.csv:3"),  # exact duplicate
        ex("good   MOVIE", "positive", "train.csv:4"),  # same after case/whitespace
        ex("fun film", "positive", "train.csv:5"),
        ex("dull plot", "negative", "train.csv:6"),
    ]
    test = [ex("fun film", "negative", "test.csv:2"), ex("awful", "negative", "test.csv:3")]
    report = check_examples({"train": train, "test": test}, ["negative", "positive"])
    found = by_check(report)
    within = found["duplicates.within-split"]
    assert within.count == 2 and "1 exact duplicate(s) and 1 more after normalising" in within.message
    assert within.where[0].startswith("train.csv:2 = train.csv:3 = train.csv:4")
    leak = found["duplicates.cross-split"]
    assert leak.count == 1 and leak.where[0].startswith("train.csv:5 = test.csv:2")
    conflict = found["duplicates.conflicting-labels"]
    assert conflict.count == 1 and "train.csv:5 (positive), test.csv:2 (negative)" in conflict.where[0]
    assert report.stats["majority_baseline"] == {"split": "test", "label": "negative", "accuracy": 1.0}


def test_balance_rare_labels_for_k_and_the_majority_baseline():
    train = [ex(f"p{i}", "pos", f"t:{i}") for i in range(12)] + [
        ex(f"n{i}", "neg", f"t:{i + 20}") for i in range(2)
    ]
    test = [ex(f"tp{i}", "pos", "x") for i in range(3)] + [ex("tn", "neg", "x")]
    report = check_examples({"train": train, "test": test}, ["neg", "pos"], shots=4)
    found = by_check(report)
    assert "fewer than K=4 examples: 'neg' (2)" in found["balance.too-rare-for-k.train"].message
    assert "6x the examples" in found["balance.imbalanced"].message
    assert (
        "majority-class baseline on test: 0.750 (always 'pos')" in found["balance.majority-baseline"].message
    )


def test_tokenizer_coverage_truncation_and_scripts(tiny_bert_dir):
    texts = [
        "good movie",
        "awful plot",
        "好电影",
        "很无聊的电影",
        "good great fun loved wonderful superb movie film plot",
    ]
    train = [ex(t, "a" if i % 2 else "b", f"t:{i}") for i, t in enumerate(texts)]
    report = check_examples({"train": train}, ["a", "b"], backbones=[str(tiny_bert_dir)], max_length=8)
    found = {f.check.split(".")[-1]: f for f in report.findings if f.check.startswith("tokens.")}
    unknown = found["unknown"]
    assert unknown.severity == "warning" and unknown.count == 9  # every CJK character is [UNK] here
    stats = report.stats[f"tokens.{tiny_bert_dir}"]
    assert stats["truncated_share"] == pytest.approx(1 / 5) and found["lengths"].severity == "warning"
    assert stats["unk_rate"] == pytest.approx(
        9 / sum(len(t.split()) if t.isascii() else len(t) for t in texts)
    )
    assert report.stats["scripts"]["CJK"] == pytest.approx(9 / sum(c.isalpha() for t in texts for c in t))


def test_dedupe_drops_cross_split_duplicates_from_train_never_from_test(tmp_path):
    (tmp_path / "train.csv").write_text(
        "text,label\ngood movie,positive\nawful plot,negative\nGood  Movie,positive\nfine,positive\ndull,negative\n"
    )
    (tmp_path / "dev.csv").write_text("text,label\nfine,positive\nboring,negative\n")
    (tmp_path / "test.csv").write_text("text,label\ngood movie,positive\nboring,negative\n")
    files = {k: str(tmp_path / f"{k}.csv") for k in ("train", "dev", "test")}
    plain = load_pools(DataConfig(**files, shots=None))
    deduped = load_pools(DataConfig(**files, shots=None, dedupe=True))
    assert len(plain.train) == 5 and [e.text for e in deduped.train] == ["awful plot", "dull"]
    assert [e.text for e in deduped.dev] == ["fine"] and len(deduped.test) == 2
    assert any("dropped 3 train and 1 dev examples" in n for n in deduped.notes)


def test_cli_inspect_prints_writes_json_and_is_strict_only_when_asked(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("text,label\ngood,positive\nbad,negative\ngood,positive\n")
    (tmp_path / "test.csv").write_text("text,label\ngood,positive\n")
    (tmp_path / "dev.csv").write_text("text,label\nmeh,negative\n")
    splits = ["--dev", str(tmp_path / "dev.csv"), "--test", str(tmp_path / "test.csv")]
    args = ["inspect", str(tmp_path / "train.csv"), *splits]
    assert main([*args, "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "WARNING duplicates.cross-split" in out and "problems found" in out
    checks = {f["check"] for f in json.loads((tmp_path / "f.json").read_text())["findings"]}
    assert {"duplicates.within-split", "duplicates.cross-split", "balance.majority-baseline"} <= checks
    assert main([*args, "--strict"]) == 1
    capsys.readouterr()
    (tmp_path / "clean.csv").write_text("text,label\ngood,positive\nbad,negative\n")
    assert main(["inspect", str(tmp_path / "clean.csv"), *splits, "--strict"]) == 1
    assert "cross-split" in capsys.readouterr().out  # 'good' is in both


def test_inspect_reports_a_file_it_cannot_load_instead_of_crashing(tmp_path):
    (tmp_path / "train.csv").write_text("review,label\ngood,positive\n")
    report = inspect_data(DataConfig(train=str(tmp_path / "train.csv")))
    assert report.findings[-1].check == "load" and "column 'text' not found" in report.findings[-1].message


def test_ner_tag_scheme_unseen_tags_and_empty_sentences(tmp_path, capsys):
    (tmp_path / "train.conll").write_text(
        "John B-PER\nlives O\nin O\nNew B-LOC\nYork I-LOC\n\n"  # lines 1-5
        "Mary I-PER\nSmith I-PER\n\n\n"  # line 7: I- without B-; lines 9-10: an empty sentence
        "Paris B-LOC\nis\n"  # line 12: no tag
    )
    (tmp_path / "test.conll").write_text("Acme B-ORG\nCorp I-ORG\nsold O\n")
    args = ["inspect", str(tmp_path / "train.conll"), "--task", "ner", "--test", str(tmp_path / "test.conll")]
    assert main([*args, "--json", "-"]) == 1  # the untagged line 12 is an error (the reader refuses it)
    found = {f["check"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    scheme = found["ner.tag-scheme"]
    assert scheme["count"] == 1 and scheme["where"][0].startswith(
        f"{tmp_path / 'train.conll'}:7: I-PER after O"
    )
    assert found["ner.empty-sentence"]["where"][0].startswith(f"{tmp_path / 'train.conll'}:10")
    assert found["ner.malformed-line"]["where"][0].startswith(f"{tmp_path / 'train.conll'}:12")
    assert "B-ORG (1), I-ORG (1)" in found["ner.unseen-tags.test"]["message"]
    assert main([*args, "--strict"]) == 1
