"""The one Transformer encoder shared by every modality.

Glossary: B batch, T tokens, D width, H heads, L layers, K top-K target layers,
M masked views per sample. Mask convention everywhere: True = masked / padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from data2vec.config import EncoderConfig
from data2vec.nn.attention import combine_masks
from data2vec.nn.block import Block


@dataclass
class EncoderOutput:
    """x: (B, T, D) final output; layer_results / block_outputs: L tensors of (B, T, D).

    `layer_results` are the FFN outputs before the last residual and norm (data2vec 1.0
    speech/text and 2.0 targets); `block_outputs` the end-of-block residual stream (1.0 vision).
    """

    x: Tensor
    layer_results: list[Tensor]
    block_outputs: list[Tensor]


class TransformerEncoder(nn.Module):
    """A stack of `Block`s with optional input norm (prenet, post-LN) and final norm (pre-LN).

    Args:
        cfg: encoder hyperparameters.
        depth: number of blocks (defaults to cfg.depth; modality prenets pass their own).
        input_norm: LayerNorm + dropout on the input, as fairseq's BlockEncoder in post-LN mode.
    """

    def __init__(self, cfg: EncoderConfig, depth: Optional[int] = None, input_norm: bool = False) -> None:
        super().__init__()
        depth = cfg.depth if depth is None else depth
        self.layer_drop = cfg.layer_drop
        self.input_norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps) if input_norm else None
        self.input_dropout = nn.Dropout(cfg.dropout)
        dpr = torch.linspace(0, cfg.drop_path, depth).tolist() if depth > 1 else [cfg.drop_path] * depth
        self.blocks = nn.ModuleList(
            Block(
                cfg.dim, cfg.num_heads, cfg.mlp_ratio, cfg.norm_first, cfg.layer_scale_init,
                cfg.dropout, cfg.attn_dropout, cfg.activation_dropout, dpr[i], cfg.norm_eps,
            )
            for i in range(depth)
        )
        # Pre-LN stacks end with a norm (unless cfg.final_norm is off); post-LN blocks already end normalized.
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps) if cfg.norm_first and cfg.final_norm and depth > 0 else None

    def forward(
        self,
        x: Tensor,
        padding_mask: Optional[Tensor] = None,
        attn_bias: Optional[Tensor] = None,
        block_bias: Optional[Sequence[Tensor]] = None,
    ) -> EncoderOutput:
        """x: (B, T, D); padding_mask: (B, T) bool; attn_bias: (B|1, H|1, T, T) additive in every
        block, or `block_bias`: one such bias per block."""
        if self.input_norm is not None:
            x = self.input_dropout(self.input_norm(x))
        if block_bias is None:
            masks = [combine_masks(padding_mask, attn_bias, x.dtype)] * len(self.blocks)
        elif attn_bias is not None or len(block_bias) != len(self.blocks):
            raise ValueError(f"{len(block_bias)} per-block attention biases for {len(self.blocks)} blocks"
                             + (" and a shared one" if attn_bias is not None else ""))
        else:
            masks = [combine_masks(padding_mask, b, x.dtype) for b in block_bias]
        layer_results, block_outputs = [], []
        for blk, attn_mask in zip(self.blocks, masks):
            if self.training and self.layer_drop > 0 and torch.rand(()) < self.layer_drop:
                continue
            x, ffn = blk(x, attn_mask)
            layer_results.append(ffn)
            block_outputs.append(x)
        if self.norm is not None:
            x = self.norm(x)
        return EncoderOutput(x, layer_results, block_outputs)
