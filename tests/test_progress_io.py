import io
import json

import pytest

from taskfit.io import write_json_atomic
from taskfit.progress import make_progress


def test_plain_progress_lines_when_not_a_terminal():
    stream = io.StringIO()
    advance = make_progress(stream, min_interval=0.0)("train", 4)
    for _ in range(4):
        advance(1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("  train: 1/4 (25%") and lines[-1].startswith("  train: 4/4 (100%")
    assert "\r" not in stream.getvalue()


def test_atomic_write_keeps_the_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"accuracy": 0.5})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind
