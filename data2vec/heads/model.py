"""The one fine-tuning model: a modality encoder + the shared Transformer (the pretraining
decoder left behind) and a task head; optional fine-tuning masks on the local features.

Every head takes the encoder output x (B, E + T, D) and its padding mask (B, E + T) | None,
where E = `modality.num_extra_tokens` (CLS for images, none for speech and text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from data2vec.masking.audio import span_mask


@dataclass(frozen=True)
class FeatureMaskConfig:
    """wav2vec 2.0 fine-tuning masks: time spans become N(0, 0.01) noise (data2vec 2.0),
    channel spans become 0. Probabilities of 0 disable a mask."""

    mask_prob: float = 0.0
    mask_length: int = 10
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 64


def mask_features(x: Tensor, padding_mask: Optional[Tensor], cfg: FeatureMaskConfig, g: torch.Generator) -> Tensor:
    """Time and channel masks of `cfg` on features x (B, T, D); padding (B, T) True = padding."""
    B, T, D = x.shape
    if cfg.mask_prob > 0:
        time = span_mask(B, T, cfg.mask_prob, cfg.mask_length, padding_mask, g).to(x.device)
        noise = torch.randn(x.shape, generator=g).to(x) * 0.01
        x = torch.where(time[..., None], noise, x)
    if cfg.mask_channel_prob > 0:
        channels = span_mask(B, D, cfg.mask_channel_prob, cfg.mask_channel_length, None, g).to(x.device)
        x = x.masked_fill(channels[:, None, :], 0.0)
    return x


class EncoderWithHead(nn.Module):
    """modality + encoder + head. State dict keys: `modality.*`, `encoder.*`, `head.*`.

    `freeze_local`: the local encoder (speech conv feature extractor) runs without gradients
    (fairseq `feature_grad_mult: 0`). `feature_mask`: masks applied in training when the caller
    passes a generator.
    """

    def __init__(self, modality: nn.Module, encoder: nn.Module, head: nn.Module, freeze_local: bool = False,
                 feature_mask: Optional[FeatureMaskConfig] = None) -> None:
        super().__init__()
        self.modality, self.encoder, self.head = modality, encoder, head
        self.freeze_local, self.feature_mask = freeze_local, feature_mask
        if freeze_local:
            self.modality.local_encoder.requires_grad_(False)

    def features(self, inputs: Tensor, padding_mask: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> tuple[Tensor, Optional[Tensor]]:
        """Every token encoded, nothing dropped. Returns x (B, E + T, D) and its padding mask."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_local):
            feats, pad = self.modality.local_features(inputs, padding_mask)
        if self.training and generator is not None and self.feature_mask is not None:
            feats = mask_features(feats, pad, self.feature_mask, generator)
        ctx = self.modality.contextualize(feats, pad, None)
        return self.encoder(ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias).x, ctx.padding_mask

    def forward(self, inputs: Tensor, padding_mask: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """The head's output: (B, C) per sequence or (B, E + T, C) per token."""
        return self.head(*self.features(inputs, padding_mask, generator))
