"""Data: readers for user files, the built-in catalog, and k-shot sampling."""

from taskfit.data.catalog import builtin_names, load_builtin
from taskfit.data.prepare import Pools, Splits, k_shot, sample_splits
from taskfit.data.readers import Columns, Example, read_examples

__all__ = [
    "Columns",
    "Example",
    "Pools",
    "Splits",
    "builtin_names",
    "k_shot",
    "load_builtin",
    "read_examples",
    "sample_splits",
]
