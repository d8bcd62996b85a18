"""Multi-head self-attention with fused qkv, an additive bias and a key padding mask."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def combine_masks(
    padding_mask: Optional[Tensor], attn_bias: Optional[Tensor], dtype: torch.dtype
) -> Optional[Tensor]:
    """Merge a key padding mask and an additive bias into one SDPA `attn_mask`.

    Args:
        padding_mask: (B, T) bool, True = padding (never attended to).
        attn_bias: (B or 1, H or 1, T, T) additive float bias (ALiBi, relative positions).
    Returns:
        None, a (B, 1, 1, T) bool "may attend" mask, or a float (B|1, H|1, T, T) bias. A bias
        keeps at least float32 under bf16/fp16 (`dtype`): ALiBi distances reach hundreds, where
        bf16 cannot tell neighbouring keys apart; fairseq adds such biases to fp32 logits.
    """
    if padding_mask is None and attn_bias is None:
        return None
    if attn_bias is None:
        return ~padding_mask[:, None, None, :]
    bias = attn_bias.to(torch.promote_types(attn_bias.dtype, dtype))
    if padding_mask is not None:
        bias = bias.masked_fill(padding_mask[:, None, None, :], float("-inf"))
    return bias


class Attention(nn.Module):
    """Fused-qkv attention through `scaled_dot_product_attention`."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"encoder.dim={dim} is not divisible by encoder.num_heads={num_heads}")
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
        """x: (B, T, D); attn_mask: from `combine_masks`. Returns (B, T, D)."""
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, hd)
        p = self.attn_dropout if self.training else 0.0
        if attn_mask is not None and attn_mask.dtype not in (torch.bool, q.dtype):
            # A float32 bias with bf16/fp16 q, k, v: logits, bias and softmax in float32.
            with torch.autocast(x.device.type, enabled=False):
                out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask.float(),
                                                     dropout_p=p).to(q.dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))
