"""Modality input encoders: raw input -> tokens. Each registers a builder by config kind."""

from data2vec.modalities.base import Context, build_modality, register_modality

__all__ = ["Context", "build_modality", "register_modality"]
