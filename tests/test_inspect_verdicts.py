"""Issue 19 #3: `taskfit inspect` exits non-zero on errors (0 on warnings unless --strict), and gives the
same verdict as compare on NER tags."""

from __future__ import annotations

import json

import pytest

from taskfit.cli import main
from taskfit.errors import TaskfitError


def test_inspect_exits_non_zero_on_errors_and_zero_on_warnings_unless_strict(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"text,label\ncaf\xe9 ok,pos\nbad,neg\n")
    for path in (empty, latin, tmp_path / "missing.csv"):
        assert main(["inspect", str(path)]) == 1, path
        assert "ERROR" in capsys.readouterr().out
    warned = tmp_path / "dupes.csv"
    warned.write_text("text,label\ngood,pos\ngood,pos\nbad,neg\nfine,pos\nmeh,neg\n")
    assert main(["inspect", str(warned)]) == 0
    assert "WARNING" in capsys.readouterr().out
    assert main(["inspect", str(warned), "--strict"]) == 1


def test_inspect_ner_rejects_the_tags_that_compare_rejects(tmp_path, capsys):
    from taskfit.data.ner import read_conll

    path = tmp_path / "train.conll"
    path.write_text("John B-PER\nlives O\nin O\nParis X-MISC\n\nMary B-PER\nruns O\n")
    with pytest.raises(TaskfitError, match="X-MISC"):
        read_conll(path)
    assert main(["inspect", str(path), "--task", "ner", "--json", "-"]) == 1
    found = {f["check"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    unknown = found["ner.unknown-tag-format"]
    assert unknown["severity"] == "error" and unknown["where"][0].startswith(f"{path}:4:")


def test_inspect_ner_reports_a_missing_or_empty_file_as_an_error(tmp_path, capsys):
    (tmp_path / "empty.conll").write_text("\n\n")
    for name in ("missing.conll", "empty.conll"):
        assert main(["inspect", str(tmp_path / name), "--task", "ner"]) == 1
        assert "ERROR   load" in capsys.readouterr().out
