"""Token classification (one label per word, predicted at each word's first sub-token)."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

IGNORE = -100  # label of sub-tokens that are not the first of a word (and of specials, padding)


class TokenHead(nn.Module):
    """Dropout then a linear projection of every token: (B, T, D) -> (B, T, num_classes)."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """x: (B, T, D) -> (B, T, num_classes)."""
        return self.out_proj(self.dropout(x))


def word_token_labels(word_lengths: list[int], labels: list[int], offset: int = 1) -> list[int]:
    """Per-token labels of one sentence: each word's label on its first sub-token, IGNORE elsewhere.

    Args:
        word_lengths: sub-tokens per word, in order.
        labels: one label per word.
        offset: tokens before the first word (1 for `<s>`), labeled IGNORE.
    Returns:
        offset + sum(word_lengths) labels.
    """
    if len(word_lengths) != len(labels):
        raise ValueError(f"{len(word_lengths)} words but {len(labels)} labels")
    out = [IGNORE] * offset
    for n, y in zip(word_lengths, labels):
        out += [y] + [IGNORE] * (n - 1)
    return out
