"""Fuzzing the file readers (issue 19): whatever the bytes, quoting, field counts, BOM or line endings, a
CSV/TSV/JSONL/CoNLL file either parses cleanly (and a file we wrote round-trips exactly) or fails with a
TaskfitError naming the file (and the line, where there is one); never another exception, never a row whose
fields silently shifted. Bounded: a fixed number of examples per property, no deadline (a loaded CI machine)."""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from taskfit.data.ner import read_conll  # noqa: E402
from taskfit.data.readers import Columns, read_examples  # noqa: E402
from taskfit.errors import TaskfitError  # noqa: E402

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
    derandomize=True,
)

# texts with everything a CSV writer must quote: delimiters, quotes, line breaks (\n, \r, \r\n), tabs, NUL,
# a BOM character mid-text, non-Latin scripts
ALPHABET = st.sampled_from(list("ab ,;\"'\t\n\r\x00\ufeffé中😀\\")) | st.characters(
    exclude_categories=("Cs",)
)
TEXTS = st.text(ALPHABET, min_size=1, max_size=30).filter(lambda t: t.strip())
LABELS = st.text(st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=8)
ROWS = st.lists(st.tuples(TEXTS, LABELS), min_size=1, max_size=12)
NEWLINES = st.sampled_from(["\n", "\r\n"])
QUOTING = st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])


def _file(suffix: str, data: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = folder / f"data{suffix}"
    path.write_bytes(data)
    return path


def _written(rows, delimiter: str, quoting: int, newline: str) -> tuple[str, list[int]]:
    """The file's text and, per row, the line its record ends on (what the reader reports)."""
    out, ends = io.StringIO(), []
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerow(["text", "label"])
    for row in rows:
        # Python 3.11's writer leaves a lone \r unquoted when the line terminator is \n (a file that really
        # is ragged there); 3.12+ always quotes line breaks, as a correct writer must
        breaks = any("\r" in f or "\n" in f for f in row)
        how = csv.QUOTE_ALL if breaks and quoting == csv.QUOTE_MINIMAL else quoting
        csv.writer(out, delimiter=delimiter, quoting=how, lineterminator=newline).writerow(row)
        # line numbers as Python's universal newlines count them (\n, \r\n, or a lone \r), as csv does
        ends.append(len(io.StringIO(out.getvalue(), newline="").readlines()))
    return out.getvalue(), ends


def _assert_clean_error(exc: TaskfitError, path: Path, line: int | None = None) -> None:
    message = str(exc)
    assert str(path) in message, message
    if line is not None:
        assert f"{path}:{line}:" in message, (line, message)


@FUZZ
@given(
    rows=ROWS, suffix=st.sampled_from([".csv", ".tsv"]), quoting=QUOTING, newline=NEWLINES, bom=st.booleans()
)
def test_a_delimited_file_we_wrote_reads_back_exactly(rows, suffix, quoting, newline, bom):
    text, _ = _written(rows, "," if suffix == ".csv" else "\t", quoting, newline)
    path = _file(suffix, (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    examples = read_examples(str(path), Columns())
    assert [(e.text, e.label) for e in examples] == [(t, lab.strip()) for t, lab in rows]


@FUZZ
@given(
    rows=ROWS,
    suffix=st.sampled_from([".csv", ".tsv"]),
    quoting=QUOTING,
    newline=NEWLINES,
    at=st.integers(min_value=0, max_value=12),
    fields=st.lists(
        st.text(st.sampled_from(list("xyz ,\t")), min_size=1, max_size=4), min_size=1, max_size=5
    ).filter(lambda f: len(f) != 2),
)
def test_a_ragged_row_is_an_error_at_its_line_never_a_shifted_row(rows, suffix, quoting, newline, at, fields):
    delimiter = "," if suffix == ".csv" else "\t"
    fields = ["word", *fields[1:]]  # a non-blank row with 1, 3, 4 or 5 fields
    at = min(at, len(rows))
    before, ends = _written(rows[:at], delimiter, quoting, newline)
    line = (ends[-1] if ends else 1) + 1
    bad = io.StringIO()
    csv.writer(bad, delimiter=delimiter, quoting=quoting, lineterminator=newline).writerow(fields)  # one line
    after = _written(rows[at:], delimiter, quoting, newline)[0].split(newline, 1)[1]  # without its header
    path = _file(suffix, (before + bad.getvalue() + after).encode("utf-8"))
    with pytest.raises(TaskfitError) as info:
        read_examples(str(path), Columns())
    _assert_clean_error(info.value, path, line)
    assert f"{len(fields)} field" in str(info.value)


@FUZZ
@given(rows=ROWS, newline=NEWLINES, bom=st.booleans())
def test_a_jsonl_file_we_wrote_reads_back_exactly(rows, newline, bom):
    text = "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + newline for t, lab in rows)
    path = _file(".jsonl", (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    assert [(e.text, e.label) for e in read_examples(str(path), Columns())] == [
        (t, lab.strip()) for t, lab in rows
    ]


def _records(data: bytes, delimiter: str) -> int | None:
    """Non-blank records after the header, as the csv module reads the decoded text; None if it cannot."""
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error):
        return None
    return sum(1 for r in rows[1:] if any(f.strip() for f in r))


# raw bytes, biased towards the ones that matter to a parser
BYTES = st.lists(
    st.sampled_from(
        [
            b"text",
            b"label",
            b",",
            b"\t",
            b'"',
            b"\n",
            b"\r",
            b"\r\n",
            b"\xef\xbb\xbf",
            b"{",
            b"}",
            b'"text":',
            b"[",
            b"x",
            b" ",
            b"\x00",
            b"\xff",
            b"\xc3\xa9",
            b"1",
        ]
    )
    | st.binary(max_size=4),
    max_size=40,
).map(b"".join)


@FUZZ
@given(data=BYTES, suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]), header=st.booleans())
def test_random_bytes_parse_cleanly_or_fail_with_a_taskfit_error(data, suffix, header):
    if header:
        data = {".csv": b"text,label\n", ".tsv": b"text\tlabel\n", ".jsonl": b""}[suffix] + data
    path = _file(suffix, data)
    try:
        examples = read_examples(str(path), Columns())
    except TaskfitError as exc:
        _assert_clean_error(exc, path)
        return
    assert all(e.text.strip() and e.label for e in examples)
    if suffix != ".jsonl":
        # every record the csv module sees became one example: none dropped, none shifted into another
        assert len(examples) == _records(data, "," if suffix == ".csv" else "\t")


TAG_TYPES = st.sampled_from(["PER", "LOC", "ORG", "MISC"])
TOKENS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6).filter(
    lambda t: t.split() == [t] and not t.startswith("-DOCSTART-")
)


@st.composite
def bio_sentences(draw):
    sentences = []
    for _ in range(draw(st.integers(1, 4))):
        tokens, tags, previous = [], [], "O"
        for _ in range(draw(st.integers(1, 6))):
            kind = draw(TAG_TYPES)
            choices = ["O", f"B-{kind}"] + ([f"I-{previous[2:]}"] if previous != "O" else [])
            previous = draw(st.sampled_from(choices))
            tokens.append(draw(TOKENS))
            tags.append(previous)
        sentences.append((tokens, tags))
    return sentences


@FUZZ
@given(sentences=bio_sentences(), newline=NEWLINES, separator=st.sampled_from([" ", "\t"]), bom=st.booleans())
def test_a_conll_file_we_wrote_reads_back_exactly(sentences, newline, separator, bom):
    text = newline.join(
        newline.join(f"{tok}{separator}{tag}" for tok, tag in zip(tokens, tags)) + newline
        for tokens, tags in sentences
    )
    path = _file(".conll", (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    examples = read_conll(path)
    assert [(list(e.tokens), list(e.tags)) for e in examples] == sentences


@FUZZ
@given(data=BYTES)
def test_random_bytes_as_conll_parse_cleanly_or_fail_with_a_taskfit_error(data):
    path = _file(".conll", data)
    try:
        examples = read_conll(path)
    except TaskfitError as exc:
        _assert_clean_error(exc, path)
        assert re.search(rf"{re.escape(str(path))}:\d+", str(exc)), str(exc)
        return
    assert all(e.tokens and len(e.tokens) == len(e.tags) for e in examples)


def test_json_nested_too_deeply_is_an_error_at_its_line(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "a", "label": "b"}\n' + "[" * 100_000 + "\n")
    with pytest.raises(TaskfitError, match=r"deep\.jsonl:2: JSON nested too deeply"):
        read_examples(str(path), Columns())
