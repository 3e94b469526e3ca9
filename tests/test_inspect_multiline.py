"""Issue 19 #7c: inspect flags a field that spans lines only when those lines look like records of the file
(an unmatched quote), never valid quoted multi-line texts."""

from __future__ import annotations

import csv

from taskfit.data.inspect import InspectReport, scan_file
from taskfit.data.readers import Columns, read_examples

LABELS = ["world", "sports", "business"]


def _news_corpus(path, n=40, tail: str = ""):
    """Valid quoted articles over several lines, some long, some lines with one comma: nothing is swallowed.
    ``tail``: raw lines appended after the articles."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        for i in range(n):
            paragraphs = [f"Paragraph {j} of story {i}, with a comma, and words." for j in range(2 + i % 5)]
            paragraphs.insert(1, f"Markets fell {i} points, analysts said")  # one comma: two 'fields'
            if i % 7 == 0:
                paragraphs.append("A long closing paragraph. " * 60)  # 1,500 characters, 10x the median
            writer.writerow(["\n".join(paragraphs), LABELS[i % 3]])
        f.write(tail)
    return path


def test_valid_quoted_multi_line_texts_are_not_flagged(tmp_path):
    path = _news_corpus(tmp_path / "news.csv")
    single = tmp_path / "reviews.csv"
    rows = [["a short one", "world"]] * 30 + [["an 855-character review, " + "x" * 830, "sports"]]
    with single.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text", "label"], *rows])
    for corpus in (path, single):
        report = InspectReport()
        scan_file(corpus, report)
        assert "parse.swallowed-records" not in {f.check for f in report.findings}, report.render()
    assert len(read_examples(str(path), Columns())) == 40


def test_one_unmatched_quote_in_a_multi_line_corpus_is_flagged_at_its_line(tmp_path):
    tail = (
        "short one,world\n"
        '"An unclosed headline about stocks,business\n'  # the quote never closes where it should...
        "markets rally again,business\n"
        "team wins the cup,sports\n"
        'she said "wow" at the summit,world\n'  # ...until here: three records swallowed
        "last one,sports\n"
    )
    path = _news_corpus(tmp_path / "news.csv", n=12, tail=tail)
    at = path.read_text(encoding="utf-8").split("\n").index('"An unclosed headline about stocks,business') + 1
    report = InspectReport()
    scan_file(path, report)
    swallowed = {f.check: f for f in report.findings}["parse.swallowed-records"]
    assert swallowed.count == 1, swallowed.where
    assert swallowed.where[0].startswith(f"{path}:{at}: field 'text' spans 4 lines")
    assert "3 of its lines look like records" in swallowed.where[0]
