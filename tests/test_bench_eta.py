"""bench/eta_accuracy.py scores the grid's time-left estimates from a console log; a log of a run that was
killed before its last cell must not be scored as if the grid had ended there."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "eta_accuracy.py"


def _module():
    spec = importlib.util.spec_from_file_location("eta_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log(path: Path, done: int, total: int = 3) -> Path:
    lines = [
        f"[{n}/{total}] done   lora | minilm | K=8 | seed {n}: accuracy 0.6 (fit 1.0 s, 10 s in all) | "
        f"elapsed {10 * n}s" + (f", {total - n} left, about {10 * (total - n)}s left" if n < total else "")
        for n in range(1, done + 1)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_unfinished_run_is_refused_and_a_finished_one_scored(tmp_path, capsys):
    eta = _module()
    assert eta.main(str(_log(tmp_path / "killed.log", done=2))) == 1
    assert "did not finish" in capsys.readouterr().out
    assert eta.main(str(_log(tmp_path / "whole.log", done=3))) == 0
    out = capsys.readouterr().out
    assert "[1/3] at 10 s: estimated 20 s left, really 20 s (+0%)" in out
