"""taskfit: adapt a pretrained language model to your own NLP task, and measure which way works best."""

from taskfit.errors import TaskfitError

__version__ = "0.1.0"

__all__ = ["TaskfitError", "__version__"]
