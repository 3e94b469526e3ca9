"""Issue 19 #1: a row with the wrong number of fields is an error naming its file:line and the counts, on
every path that reads a CSV/TSV (compare/run, predict), never a silently shifted row that invents a class."""

from __future__ import annotations

import pytest

from taskfit.config import DataConfig
from taskfit.data.inspect import InspectReport, scan_file
from taskfit.data.readers import Columns, read_examples
from taskfit.errors import TaskfitError
from taskfit.serving.batch import iter_examples
from taskfit.tasks import load_pools


def ragged_csv(path, bad_line: int = 42, bad: str = "too,many,fields,here"):
    rows = ["text,label"] + [
        f"text {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}" for i in range(60)
    ]
    rows[bad_line - 1] = bad
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bad", "counts"), [("too,many,fields,here", "4 fields"), ("lonely text", "1 field")]
)
def test_a_ragged_row_is_an_error_naming_file_line_and_counts(tmp_path, bad, counts):
    path = ragged_csv(tmp_path / "train.csv", bad=bad)
    pattern = rf"train\.csv:42: {counts}, but the header has 2"
    with pytest.raises(TaskfitError, match=pattern):
        read_examples(str(path), Columns())
    with pytest.raises(TaskfitError, match=pattern):  # compare / run
        load_pools(DataConfig(train=str(path)), "classification")
    with pytest.raises(TaskfitError, match=pattern):  # predict
        list(iter_examples(path, Columns(label=None)))
    tsv = tmp_path / "train.tsv"
    tsv.write_text(path.read_text().replace(",", "\t"))
    with pytest.raises(TaskfitError, match=rf"train\.tsv:42: {counts}"):
        read_examples(str(tsv), Columns())


def test_inspect_still_reports_the_ragged_row_as_a_finding(tmp_path):
    path = ragged_csv(tmp_path / "train.csv")
    report = InspectReport()
    scan_file(path, report)
    found = {f.check: f for f in report.findings}["parse.field-count"]
    assert found.severity == "error" and found.where == [f"{path}:42: 4 fields, header has 2"]
