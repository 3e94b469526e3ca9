"""Issue 32: a stray quote that swallows dozens of records is named, with the line where it opened, by
`taskfit inspect`, `init` and `compare`; a valid quoted paragraph is not."""

from __future__ import annotations

import csv
import random

from taskfit.cli import main
from taskfit.config import validate_config
from taskfit.data.inspect import InspectReport, scan_file
from taskfit.tasks import load_pools
from tests.conftest import WORDS

STRAY_LINE = 21  # the file line where the unmatched quote opens
SWALLOWED = 30  # records read as part of that line's text


def stray_quote_csv(path, n=120):
    """Short one-line reviews; the quote opened at STRAY_LINE closes only SWALLOWED lines later."""
    rng = random.Random(5)
    lines = ["text,label"]
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        lines.append(" ".join(rng.sample(WORDS[:20], 6)) + f",{label}")
    lines[STRAY_LINE - 1] = '"' + lines[STRAY_LINE - 1]
    closing = STRAY_LINE - 1 + SWALLOWED + 1
    lines[closing] = lines[closing].replace(" ", ' she said "wow" then ', 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def scan(path) -> dict:
    report = InspectReport()
    scan_file(path, report)
    return {f.check: f for f in report.findings}


def test_a_stray_quote_swallowing_thirty_records_is_flagged_at_the_line_it_opened(tmp_path):
    path = stray_quote_csv(tmp_path / "reviews.csv")
    swallowed = scan(path)["parse.swallowed-records"]
    assert swallowed.count == 1
    assert swallowed.where[0].startswith(f"{path}:{STRAY_LINE}: field 'text' spans {SWALLOWED + 2} lines")
    assert f"{SWALLOWED + 1} of its lines look like records" in swallowed.where[0]
    # the message alone (what compare and init print) names the line
    assert f"quote opened at line {STRAY_LINE}" in swallowed.message


def test_the_opening_line_is_named_when_the_text_is_not_the_first_column(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text(
        "notes,text,label\n"
        "n,fine film,pos\n"
        '"a valid note\nover two lines","stray quote here,neg\n'  # the record opens at 3, its text's quote at 4
        "n,boring plot,neg\n"
        "n,great actors,pos\n"
        'n,he said "so" twice,pos\n'
        "n,dull,neg\n"
        "n,superb,pos\n"
        "n,awful,neg\n",
        encoding="utf-8",
    )
    swallowed = scan(path)["parse.swallowed-records"]
    assert swallowed.where[0].startswith(f"{path}:4: field 'text'"), swallowed.where
    assert "quote opened at line 4" in swallowed.message


def test_a_field_far_longer_than_the_others_over_many_lines_is_flagged(tmp_path):
    """Lines that do not parse as records (a pasted log), yet a text 50x the others over 40 lines."""
    path = tmp_path / "tickets.csv"
    rows = [["text", "label"]] + [[f"printer {i} is jammed again", "hardware"] for i in range(60)]
    log = "\n".join(f"[{i:02}] retry; code={i * 7}; host a, b, c" for i in range(40))
    rows.insert(10, [log, "software"])
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    found = scan(path)
    assert "parse.swallowed-records" not in found
    long = found["parse.long-field"]
    assert long.severity == "warning" and long.count == 1
    assert long.where[0].startswith(f"{path}:11: field 'text' spans 40 lines"), long.where
    assert "quote opened at line 11" in long.message


def test_a_valid_quoted_three_line_paragraph_is_not_flagged(tmp_path):
    """Intent data with more labels than a categorical column holds: a paragraph line with one comma must
    not pass for a record of (text, label)."""
    path = tmp_path / "intents.csv"
    rows = [["text", "label"]] + [[f"please help with request {i}", f"intent_{i % 80}"] for i in range(120)]
    paragraph = "My card arrived today.\nIt does not work, the shop said\nwhat should I do now?"
    rows.insert(7, [paragraph, "card_not_working"])
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    found = scan(path)
    assert not {"parse.swallowed-records", "parse.long-field"} & set(found), [
        (f.check, f.where) for f in found.values()
    ]


def test_init_prints_the_swallowed_records_with_their_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    stray_quote_csv(tmp_path / "reviews.csv")
    assert main(["init", "reviews.csv"]) == 0
    err = capsys.readouterr().err
    assert "data check: parse.swallowed-records" in err
    assert f"quote opened at line {STRAY_LINE}" in err


def test_compare_data_check_names_the_line(tmp_path):
    from taskfit.compare.engine import data_problems

    path = stray_quote_csv(tmp_path / "reviews.csv")
    config = validate_config(
        {
            "name": "x",
            "data": {"train": str(path)},
            "strategies": [{"name": "zero-shot", "backbone": "minilm"}],
        }
    )
    warnings = data_problems(config, load_pools(config.data, config.task))
    assert any(w.startswith("parse.swallowed-records") and f"line {STRAY_LINE}" in w for w in warnings), (
        warnings
    )
