"""Shared, modality-free building blocks."""

from data2vec.nn.encoder import EncoderOutput, TransformerEncoder

__all__ = ["EncoderOutput", "TransformerEncoder"]
