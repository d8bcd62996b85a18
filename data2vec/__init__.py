"""data2vec 1.0 and 2.0 self-supervised learning for images, speech and text."""

__version__ = "0.1.0"
