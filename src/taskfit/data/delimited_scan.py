"""The structure of a CSV/TSV file as written, before the reader sees it: rows whose field count is not the
header's, and quoted fields that most likely swallowed records (an unmatched quote). ``taskfit inspect``,
``init`` and ``compare`` report these through ``data.inspect``."""

from __future__ import annotations

import csv
import io
import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskfit.data.inspect import InspectReport

LINES_NAMED = 3  # opening lines named in a finding's one-line message


def scan_delimited(path: Path, text: str, delimiter: str, report: InspectReport) -> None:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    records: list[tuple[int, list[str]]] = []
    start = reader.line_num + 1
    try:
        for row in reader:
            records.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        report.add("parse.csv", "error", f"{path}:{reader.line_num}: {exc}", 1)
    wrong = [
        f"{path}:{line}: {len(row)} fields, header has {len(header)}"
        for line, row in records
        if row and len(row) != len(header)
    ]
    if wrong:
        report.add(
            "parse.field-count",
            "error",  # the readers refuse such a row (it would shift its fields)
            f"{path}: {len(wrong)} row(s) with a different number of fields than the header ({len(header)})",
            len(wrong),
            wrong,
        )
    record_like, strong = _record_matcher(header, records, delimiter)
    for col, name in enumerate(header):
        _scan_multi_line_fields(path, records, col, name, record_like, strong, report)


LONG_FIELD_LINES = 10  # a field over this many lines and ...
LONG_FIELD_RATIO = 10  # ... this many times the column's 90th-percentile length holds more than one text


def _scan_multi_line_fields(
    path: Path,
    records: list[tuple[int, list[str]]],
    col: int,
    name: str,
    record_like,
    strong: bool,
    report: InspectReport,
) -> None:
    """Flag one column's multi-line fields that an unmatched quote most likely made: their lines look like
    this file's records, or they run over many lines and dwarf the column's other texts."""
    lengths = sorted(len(row[col]) for _, row in records if len(row) > col)
    if not lengths:
        return
    median = statistics.median(lengths)
    p90 = lengths[int(0.9 * (len(lengths) - 1))]
    swallowed, long = [], []
    for line, row in records:
        if len(row) <= col or not _LINE_BREAK.search(row[col]):
            continue  # a long field on one line cannot hold records: records are lines
        value = row[col]
        parts = _LINE_BREAK.split(value)
        opened = line + sum(len(_LINE_BREAK.findall(row[k])) for k in range(col))
        matches = sum(map(record_like, parts))
        # valid quoted texts span lines too (articles, reviews): only lines shaped like this file's records
        # say that a quote swallowed them; with no column whose values have a shape, a line with the right
        # field count proves little (prose has commas), so most of the lines must have it
        looks_swallowed = matches >= 1 if strong else matches >= 2 and 2 * matches >= len(parts)
        if looks_swallowed:
            swallowed.append(
                (
                    opened,
                    f"{path}:{opened}: field '{name}' spans {len(parts)} lines, {len(value):,} characters "
                    f"(median {median:,.0f}), {matches} of its lines look like records: {value[:60]!r}…",
                )
            )
        elif len(parts) > LONG_FIELD_LINES and len(value) > LONG_FIELD_RATIO * max(p90, 1):
            long.append(
                (
                    opened,
                    f"{path}:{opened}: field '{name}' spans {len(parts)} lines, {len(value):,} characters "
                    f"(90% of the column's texts are at most {p90:,}): {value[:60]!r}…",
                )
            )
    if swallowed:
        report.add(
            "parse.swallowed-records",
            "warning",
            f"{path}: {len(swallowed)} '{name}' field(s) span lines that look like records of this file: "
            f"likely records swallowed by an unmatched quote ({_opened_at(swallowed)})",
            len(swallowed),
            [where for _, where in swallowed],
        )
    if long:
        report.add(
            "parse.long-field",
            "warning",
            f"{path}: {len(long)} '{name}' field(s) over more than {LONG_FIELD_LINES} lines and "
            f"{LONG_FIELD_RATIO}x longer than the column's other texts: likely a quote left open over "
            f"records ({_opened_at(long)})",
            len(long),
            [where for _, where in long],
        )


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _opened_at(found: list[tuple[int, str]]) -> str:
    """'quote opened at line 21' or 'quotes opened at lines 21, 80, ...': what compare and init print."""
    lines = [str(line) for line, _ in found]
    shown = ", ".join(lines[:LINES_NAMED]) + (", …" if len(lines) > LINES_NAMED else "")
    return f"quote opened at line {shown}" if len(lines) == 1 else f"quotes opened at lines {shown}"


LABEL_MAX_VALUES = 50  # a column with at most this many distinct values (and repeats) is read as categorical


def _record_matcher(header: list[str], records: list[tuple[int, list[str]]], delimiter: str):
    """(test, strong): a test for one line of text (does it look like a record of this file?), and whether
    it checks more than the field count. A record has the header's field count and, in each column whose
    values have a shape, a value of that shape: a known one in a categorical column (labels), a number in
    a numeric one, one word in a column of single words (e.g. intent names like card_arrival)."""
    good = [row for _, row in records if len(row) == len(header)]
    shapes = {}
    for col in range(len(header)):
        shape = _column_shape([row[col].strip() for row in good])
        if shape is not None:
            shapes[col] = shape

    def record_like(line: str) -> bool:
        fields = line.split(delimiter)
        if len(fields) != len(header):
            return False
        return all(fits(fields[col].strip().strip('"')) for col, fits in shapes.items())

    return record_like, bool(shapes)


def _column_shape(values: list[str]):
    """A test a value of this column passes, or None when its values have no shape (free text)."""
    distinct = set(values)
    if not distinct:
        return None
    if len(distinct) <= LABEL_MAX_VALUES and len(distinct) < max(len(values) / 2, 2):
        return distinct.__contains__
    if all(_is_number(v) for v in distinct):
        return _is_number
    if all(v and not any(c.isspace() for c in v) for v in distinct):
        return lambda v: bool(v) and not any(c.isspace() for c in v)
    return None


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
