"""Random batches of the right shapes for any input config (contract tests, smoke runs)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from data2vec.config import InputConfig

_MAKERS: dict[str, Callable[[InputConfig, int], dict[str, Any]]] = {}


def register_synthetic(kind: str):
    """Decorator registering `maker(input_cfg, batch_size) -> batch dict` for an input kind."""

    def wrap(fn):
        _MAKERS[kind] = fn
        return fn

    return wrap


def synthetic_batch(cfg: InputConfig, batch_size: int = 2) -> dict[str, Any]:
    if cfg.kind not in _MAKERS:
        raise ValueError(f"no synthetic batches for input kind {cfg.kind!r}")
    return _MAKERS[cfg.kind](cfg, batch_size)


@register_synthetic("beit")
@register_synthetic("image")
def _images(cfg: InputConfig, batch_size: int) -> dict[str, Any]:
    return {"image": torch.randn(batch_size, cfg.in_chans, cfg.image_size, cfg.image_size)}
