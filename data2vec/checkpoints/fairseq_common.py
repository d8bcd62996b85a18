"""Helpers shared by the data2vec 1.0 / BEiT / fine-tuned checkpoint readers and writers:
explicit key dropping, small key-map builders and config checks."""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

from torch import Tensor

from data2vec.checkpoints.keymaps import KeyMap, KeyMapError, map_state
from data2vec.config import ConfigError, PretrainConfig, from_dict
from data2vec.heads.finetuned import HeadConfig
from data2vec.models import build_model

# The backbone prefix of a fairseq `wav2vec_ctc` wrapper.
W2V = "w2v_encoder.w2v_model."


def drop_matching(state: dict[str, Any], pattern: str, reason: str, dropped: list, where: str,
          check: Optional[Callable[[str, Any], None]] = None) -> None:
    """Remove the keys fully matching `pattern`, after `check(key, value)`, recording why."""
    rx = re.compile(pattern)
    for key in [k for k in state if rx.fullmatch(k)]:
        if check is not None:
            check(key, state[key])
        state.pop(key)
        dropped.append((f"{where}{key}", reason))


def check_version(key: str, value: Any) -> None:
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise KeyMapError(f"key {key!r}: expected fairseq's one-element format-version buffer, got "
                          f"{getattr(value, 'shape', type(value).__name__)}")


VERSION_REASON = "fairseq TransformerEncoder's state-format version buffer (no weights)"

# fairseq post-LN Transformer layer (wav2vec 2.0 TransformerSentenceEncoderLayer and the
# RoBERTa TransformerEncoderLayer share these names) -> our post-LN Block.
_V1_LAYER = (("self_attn.qkv", "attn.qkv"), ("self_attn.out_proj", "attn.proj"), ("self_attn_layer_norm", "norm1"),
             ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2"), ("final_layer_norm", "norm2"))


def v1_layers(src: str) -> KeyMap:
    return KeyMap(tuple((f"{src}{{}}.{a}.{wb}", f"encoder.blocks.{{}}.{b}.{wb}")
                        for a, b in _V1_LAYER for wb in ("weight", "bias")))


def as_int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{where}: {name}={value!r} is not an integer")
    return int(value)


def check_unsupported(section: dict, table: tuple, where: str) -> None:
    for name, ok in table:
        if name in section and not ok(section[name]):
            raise ConfigError(f"{where}.{name}={section[name]!r} is not supported by our model")


def build_config(data: dict, where: str) -> PretrainConfig:
    try:
        return from_dict(PretrainConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{where}: stored config does not fit our model: {e}") from e


def model_keys(cfg: PretrainConfig, head: Optional[HeadConfig]) -> tuple[dict[str, Tensor], Any]:
    model = build_model(cfg.model, head)
    return model.state_dict(), model


def input_kind(cfg: PretrainConfig) -> str:
    return cfg.model.input.kind


def export_map(state: dict[str, Tensor], km: KeyMap, where: str) -> dict[str, Tensor]:
    return map_state(state, km.inverse(), None, where)


def require_head(head: HeadConfig, kind: str, cfg: PretrainConfig) -> None:
    if head.kind != kind:
        raise ValueError(f"no fairseq layout for a data2vec 1.0 {cfg.model.input.kind} model with a {head.kind} head "
                         f"(supported: {kind})")
