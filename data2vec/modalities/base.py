"""What every modality encoder provides, and the registry that builds them.

A modality encoder is an `nn.Module` with:
- `input_key`: the batch key holding its raw input ("image", "audio", "tokens").
- `num_extra_tokens`: tokens prepended before the shared encoder (CLS for images).
- `local_encoder`: raw input -> features (patch embed, conv stack, embeddings); the teacher
  may share it with the student instead of keeping its own copy (TeacherConfig.scope).
- `local_features(inputs, padding_mask) -> (x (B, T, D), padding_mask (B, T) | None)`.
- `make_mask(padding_mask, batch, length, generator) -> (B, T) bool`, True = masked, the same
  count in every row, never on padding.
- `contextualize(x, padding_mask, info) -> Context`: positions, dropping masked tokens (when
  `info` is given), extra tokens, prenet blocks. `info=None` keeps every token (teacher,
  feature extraction, fine-tuning).
- `build_decoder(cfg) -> nn.Module`: the data2vec 2.0 decoder for this modality.
- `noise_std`: std of the noise placed at masked slots of the decoder input.

data2vec 1.0 uses `contextualize(..., info=None)` on features whose masked positions already
hold the model's mask embedding. A modality that masks raw ids instead (text: `<mask>`) sets
`masks_input_tokens = True` and provides `corrupt(inputs, selected, generator) -> (inputs,
loss_mask)`. A 1.0-only modality (BEiT images) raises in `build_decoder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import Tensor, nn

from data2vec.config import EncoderConfig, InputConfig

_BUILDERS: dict[str, Callable[[InputConfig, EncoderConfig], nn.Module]] = {}


@dataclass
class Context:
    """x: (B, E + T', D) tokens for the shared encoder; padding_mask: (B, E + T') | None;
    attn_bias: (B|1, H, E + T', E + T') | None, or one such bias per block."""

    x: Tensor
    padding_mask: Optional[Tensor] = None
    attn_bias: Optional[Tensor | list[Tensor]] = None


def register_modality(kind: str):
    """Decorator registering `builder(input_cfg, encoder_cfg) -> module` for a config kind."""

    def wrap(fn):
        _BUILDERS[kind] = fn
        return fn

    return wrap


def build_modality(cfg: InputConfig, enc: EncoderConfig) -> nn.Module:
    if cfg.kind not in _BUILDERS:
        raise ValueError(f"model.input.kind={cfg.kind!r} has no modality encoder; known: {sorted(_BUILDERS)}")
    return _BUILDERS[cfg.kind](cfg, enc)
