"""Backbones, sentence embeddings and LM scoring."""

from taskfit.models.backbones import BUILTIN_BACKBONES, Backbone, load_backbone

__all__ = ["BUILTIN_BACKBONES", "Backbone", "load_backbone"]
