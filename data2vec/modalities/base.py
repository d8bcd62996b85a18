"""The modality contract: what every modality encoder provides to the shared model code.

`Modality` is the typed `Protocol` the data2vec 1.0 and 2.0 models, the EMA teacher, the
optimizer, feature extraction and fine-tuning call; nothing outside a modality's own module
tests which modality it has. `ModalitySpec` (in `data2vec.modalities.registry`) registers one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from data2vec.config import DecoderConfig
from data2vec.masking.common import MaskInfo


@dataclass
class Context:
    """x: (B, E + T', D) tokens for the shared encoder; padding_mask: (B, E + T') | None;
    attn_bias: (B|1, H, E + T', E + T') | None added in every block, or `block_bias`: one
    such bias per block (then `attn_bias` is None)."""

    x: Tensor
    padding_mask: Optional[Tensor] = None
    attn_bias: Optional[Tensor] = None
    block_bias: Optional[list[Tensor]] = None


@runtime_checkable
class Modality(Protocol):
    """A modality encoder: raw input -> tokens for the shared Transformer, plus the parts of
    masking, decoding and teaching that depend on the modality. Shapes: B batch, T tokens
    (frames, patches, ids), E extra tokens, D width.

    Teacher scope (`TeacherConfig.scope`): "all" averages the whole modality, "context" shares
    `local_encoder` with the student and averages the rest, "blocks" shares all of it.
    """

    input_key: str  # the batch key holding the raw input ("image", "audio", "tokens", ...)
    num_extra_tokens: int  # E tokens prepended before the shared encoder (a CLS token: 1)
    noise_std: float  # std of the noise at masked slots of the data2vec 2.0 decoder input
    no_weight_decay: tuple[str, ...]  # parameter names (in this module) that never decay, beyond biases and 1-D
    local_encoder: nn.Module  # raw input -> features; the part a "context" teacher shares
    grid: int  # tokens per side when the tokens form a square grid (image patches), else 0

    def local_features(self, inputs: Tensor, padding_mask: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        """Raw input (and its padding, True = padding) -> features (B, T, D) and (B, T) | None."""

    def make_mask(self, padding_mask: Optional[Tensor], batch: int, length: int, generator: torch.Generator) -> Tensor:
        """(B, T) bool, True = masked: the same count in every row, never on padding."""

    def contextualize(self, x: Tensor, padding_mask: Optional[Tensor], info: Optional[MaskInfo]) -> Context:
        """Features (B, T, D) -> the shared encoder's input: positions, masked tokens dropped
        (when `info` is given), extra tokens, prenet blocks. `info=None` keeps every token
        (teacher, data2vec 1.0 student, feature extraction, fine-tuning)."""

    def build_decoder(self, cfg: DecoderConfig) -> nn.Module:
        """The data2vec 2.0 decoder: (B, T, D) -> (B, T, D) predictions (raises if 1.0-only)."""

    def init_v1(self, model: nn.Module) -> Optional[nn.Parameter]:
        """data2vec 1.0: after BERT init of `model`, this modality's own initialisation; returns
        the learned (D,) embedding put at masked feature positions (None: the modality
        corrupts its raw input instead, see `v1_student_input`)."""

    def v1_student_input(self, inputs: Tensor, feats: Tensor, raw_padding: Optional[Tensor], mask: Tensor,
                         mask_emb: Optional[nn.Parameter], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """data2vec 1.0 student features (B, T, D) with the masked positions hidden, and the
        positions the loss is taken at (B, T) bool."""


def masked_features(feats: Tensor, mask: Tensor, mask_emb: Optional[nn.Parameter]) -> tuple[Tensor, Tensor]:
    """`v1_student_input` of a modality that hides features: masked positions of feats
    (B, T, D) hold `mask_emb` (D,); the loss is taken at every masked position (B, T)."""
    if mask_emb is None:
        raise ValueError("this modality masks features and needs the model's mask embedding")
    return torch.where(mask[..., None], mask_emb.to(feats.dtype), feats), mask


def uniform_mask_embedding(dim: int) -> nn.Parameter:
    """wav2vec 2.0 / data2vec speech `mask_emb`: (dim,) uniform in [0, 1)."""
    return nn.Parameter(torch.empty(dim).uniform_())
