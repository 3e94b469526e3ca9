"""Prompt templates, verbalizers and demonstration selection."""

from taskfit.prompts.template import Template
from taskfit.prompts.verbalizer import Verbalizer

__all__ = ["Template", "Verbalizer"]
