"""Sequence classification heads: masked mean pooling + Linear (speech), and pooled LayerNorm +
Linear (images, as BEiT / MAE / data2vec fine-tuning)."""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

POOLINGS = ("mean", "cls")


def masked_mean(x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
    """Mean over real positions: x (B, T, D), padding_mask (B, T) True = padding -> (B, D)."""
    if padding_mask is None:
        return x.mean(1)
    keep = (~padding_mask).unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)


class MeanPoolClassifier(nn.Module):
    """Mean pooling over the sequence (padding excluded), dropout, Linear to the classes."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """x: (B, T, D) -> logits (B, C)."""
        return self.proj(self.dropout(masked_mean(x, padding_mask)))


class PooledNormClassifier(nn.Module):
    """Image classification as BEiT / data2vec fine-tuning: the mean of the patch tokens (extra
    tokens skipped) or the CLS token, LayerNorm (`fc_norm`), dropout, Linear (`head`). Names
    match BEiT, HF and fairseq `mae_image_classification`."""

    def __init__(self, dim: int, num_classes: int, num_extra_tokens: int = 1, eps: float = 1e-6,
                 pooling: str = "mean", dropout: float = 0.0) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if pooling == "cls" and num_extra_tokens < 1:
            raise ValueError("pooling='cls' needs a CLS token; this model has none")
        self.skip, self.pooling = num_extra_tokens, pooling
        self.fc_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)  # fairseq mae_image_classification
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """x: (B, E + T, D) encoder output -> logits (B, C)."""
        pooled = x[:, self.skip:].mean(1) if self.pooling == "mean" else x[:, self.skip - 1]
        return self.head(self.dropout(self.fc_norm(pooled)))


def classification_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy: logits (B, C); labels (B,) class ids or (B, C) soft targets (mixup)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
