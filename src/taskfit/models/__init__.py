"""Backbones, sentence embeddings and LM scoring."""

from taskfit.lazy import lazy_exports

__getattr__ = lazy_exports(
    __name__,
    {name: "taskfit.models.backbones" for name in ("BUILTIN_BACKBONES", "Backbone", "load_backbone")},
)
__all__ = ["BUILTIN_BACKBONES", "Backbone", "load_backbone"]
