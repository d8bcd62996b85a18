"""Sentence(-pair) classification and regression on a pretrained encoder (RoBERTa/GLUE style)."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn


class FirstTokenHead(nn.Module):
    """fairseq `RobertaClassificationHead` on the first token (`<s>`): dropout, dense D->D, tanh,
    dropout, projection to `num_outputs` (classes, or 1 for regression).

    Parameter names (`dense`, `out_proj`) match fairseq's `classification_heads.<name>.*`.
    """

    def __init__(self, dim: int, num_outputs: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, num_outputs)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """x: (B, T, D) encoder output -> (B, num_outputs)."""
        h = self.dense(self.dropout(x[:, 0]))
        return self.out_proj(self.dropout(h.tanh()))
