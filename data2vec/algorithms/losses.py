"""Regression losses and collapse monitors (pure functions)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def regression_loss(pred: Tensor, target: Tensor, beta: float = 0.0, scale: Optional[float] = None) -> Tensor:
    """Per-element data2vec regression loss, summed.

    Args:
        pred, target: (N, D).
        beta: 0 selects L2; > 0 smooth L1 with this beta.
        scale: multiplier; None means 1/sqrt(D) (fairseq `loss_scale: null`).
    Returns:
        scalar: sum over N and D of the scaled per-element loss.
    """
    pred, target = pred.float(), target.float()
    if beta == 0:
        loss = F.mse_loss(pred, target, reduction="none")
    else:
        loss = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)
    s = 1.0 / math.sqrt(pred.shape[-1]) if scale is None else scale
    return loss.sum() * s


def feature_std(x: Tensor) -> Tensor:
    """Collapse monitor: std of each channel over all positions, averaged. x: (..., D)."""
    x = x.detach().float().reshape(-1, x.shape[-1])
    if x.shape[0] < 2:
        return x.new_zeros(())
    return torch.sqrt(x.var(dim=0) + 1e-6).mean()
