"""What the fork server imports once, so that each cell's process starts with it (``engine._run_isolated``).

taskfit imports the model libraries lazily (``taskfit --help`` stays fast), so without this every cell paid
for importing transformers' model classes, peft, accelerate and scikit-learn again: seconds per cell, which
on the default grid's 38 cells was a visible share of the wall time (BENCHMARKS.md, issue 22).
"""

from __future__ import annotations

import importlib

MODULES = (
    "transformers",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.bert.modeling_bert",  # minilm
    "transformers.models.llama.modeling_llama",  # smollm2
    "accelerate",
    "peft",
    "safetensors.torch",
    "sklearn.linear_model",
)


def preload() -> list[str]:
    """Import what the cells will need; a library that is missing or fails to import is left to the cell that
    needs it (which then reports the error in its own folder)."""
    loaded = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (any import failure is the cell's to report, not the server's)
            continue
        loaded.append(name)
    return loaded


preload()
