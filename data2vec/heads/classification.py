"""Utterance (sequence) classification: masked mean pooling over frames, then a Linear."""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn


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
    """Image classification as BEiT / data2vec fine-tuning: mean of the patch tokens (extra
    tokens skipped), LayerNorm (`fc_norm`), Linear (`head`). Names match BEiT, HF and fairseq
    `mae_image_classification`."""

    def __init__(self, dim: int, num_classes: int, num_extra_tokens: int = 1, eps: float = 1e-6) -> None:
        super().__init__()
        self.skip = num_extra_tokens
        self.fc_norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, E + T, D) encoder output -> logits (B, C)."""
        return self.head(self.fc_norm(x[:, self.skip:].mean(1)))


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy: logits (B, C), labels (B,) class ids."""
    return F.cross_entropy(logits.float(), labels)
