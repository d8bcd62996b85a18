"""data2vec 1.0 and 2.0 self-supervised learning for images, speech and text."""

__version__ = "0.1.0"

from data2vec.checkpoints.load import LoadedModel, load_model, read_checkpoint  # noqa: E402

__all__ = ["LoadedModel", "__version__", "load_model", "read_checkpoint"]
