"""The HTML report in a real headless browser (Debian's chromium): it renders, the plots are visible, no
console errors. CI installs chromium (.ci/run), so there this test runs rather than skips."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskfit.compare import run_experiment
from taskfit.config import validate_config

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from check_report import find_chromium  # noqa: E402

needs_browser = pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("CI"), reason="no chromium here (apt-get install chromium)"
)


@needs_browser
def test_report_renders_with_visible_plots_and_no_console_errors(sentiment_csv, tiny_bert_dir, tmp_path):
    raw = {
        "name": "browser",
        "data": {"train": str(sentiment_csv), "shots": [2, 4], "dev_shots": 2},
        "seeds": [0, 1],
        "strategies": [
            {"name": "zero-shot", "backbone": str(tiny_bert_dir)},
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 2},
        ],
    }
    run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    script = Path(__file__).parents[1] / "scripts" / "check_report.py"
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out" / "report.html"), "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"id": "plot-shots"' in result.stdout and shot.stat().st_size > 10_000


@needs_browser
def test_the_check_fails_on_a_broken_page(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><table><tbody></tbody></table>"
        "<figure id='plot-x'><svg width='0' height='0'></svg></figure>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    script = Path(__file__).parents[1] / "scripts" / "check_report.py"
    result = subprocess.run(
        [sys.executable, str(script), str(page), "--min-figures", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    for problem in ("console error", "page exception", "plot plot-x not visibly drawn", "no rows"):
        assert problem in result.stderr
