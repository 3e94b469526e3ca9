"""The field's libraries, made quiet: taskfit reports its own progress, and their per-load bars and notices
only add noise. Nothing here imports them (a CLI command that loads no model must not pay for transformers)."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings


def quiet_libraries() -> None:
    """Silence transformers' and the hub's progress bars and notices, now or when they are first imported
    (their own environment variables; a value the user set wins)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")
    if "transformers" in sys.modules:  # already imported: its verbosity was read at import time
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


@contextlib.contextmanager
def quiet_gguf_conversion():
    """transformers converts a GGUF with a plain tqdm bar that no verbosity setting reaches: turn it off while
    taskfit converts (and says so itself)."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf
    except ImportError:  # another transformers layout: its bar shows, nothing breaks
        yield
        return
    original = getattr(gguf, "tqdm", None)
    if original is None:
        yield
        return
    gguf.tqdm = lambda *args, **kwargs: original(*args, **{**kwargs, "disable": True})
    try:
        yield
    finally:
        gguf.tqdm = original
