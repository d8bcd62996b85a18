"""Teacher targets: normalize each of the top-K layers, average, optionally normalize again."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from data2vec.config import TargetConfig


def instance_norm_time(x: Tensor, padding_mask: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """Normalize each (sample, channel) over time, like `F.instance_norm` on (B, D, T).

    x: (B, T, D). With a padding mask (B, T; True = padding) the statistics use only real
    positions, so a padded copy of an utterance gets the same targets as the unpadded one
    (fairseq includes the padding; we deliberately do not).
    """
    if padding_mask is None:
        return F.instance_norm(x.float().transpose(1, 2), eps=eps).transpose(1, 2)
    x = x.float()
    keep = (~padding_mask).unsqueeze(-1).float()  # (B, T, 1)
    n = keep.sum(1, keepdim=True).clamp_min(1.0)
    mean = (x * keep).sum(1, keepdim=True) / n
    var = (((x - mean) * keep) ** 2).sum(1, keepdim=True) / n
    return (x - mean) / torch.sqrt(var + eps) * keep


def make_targets(layers: list[Tensor], cfg: TargetConfig, padding_mask: Optional[Tensor] = None) -> Tensor:
    """Average of the top-K teacher layers, each normalized without parameters.

    Args:
        layers: L tensors (B, T, D), in block order (extra tokens already removed).
        cfg: which normalizations to apply and K = cfg.top_k.
        padding_mask: (B, T) bool, True = padding.
    Returns:
        (B, T, D) float32 targets.
    """
    if cfg.top_k > len(layers) or cfg.top_k < 1:
        raise ValueError(f"targets.top_k={cfg.top_k} but the teacher has {len(layers)} blocks")
    top = layers[-cfg.top_k :]
    y = torch.zeros_like(top[0], dtype=torch.float32)
    for t in top:
        t = t.float()
        if cfg.instance_norm_layers:
            t = instance_norm_time(t, padding_mask)
        if cfg.layer_norm_layers:
            t = F.layer_norm(t, t.shape[-1:])
        y = y + t
    y = y / len(top)
    if cfg.layer_norm_final:
        y = F.layer_norm(y, y.shape[-1:])
    if cfg.instance_norm_final:
        y = instance_norm_time(y, padding_mask)
    return y
