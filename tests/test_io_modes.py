"""Issue 19 #5: files written atomically get the mode any other new file gets (the umask), not 0600."""

from __future__ import annotations

import os
import stat

from taskfit.io import write_json_atomic, write_text_atomic


def test_atomic_writes_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "report.md", "# hi\n")
        write_json_atomic(tmp_path / "metrics.json", {"a": 1})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        for name in ("report.md", "metrics.json"):
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o644, (name, oct(mode))
        os.umask(0o077)
        write_text_atomic(tmp_path / "private.md", "x")
        assert stat.S_IMODE((tmp_path / "private.md").stat().st_mode) == 0o600
        (tmp_path / "report.md").chmod(0o640)  # a replaced file gets the umask's mode, like a new one
        os.umask(0o022)
        write_text_atomic(tmp_path / "report.md", "again\n")
        assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644
    finally:
        os.umask(old)
