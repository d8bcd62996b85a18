"""Declarative key maps between foreign checkpoint layouts and ours, with strict checks.

A `KeyMap` is a list of `(source template, target template[, transform])` rules where `{}`
matches a layer index. `map_state` maps every key of a state dict: a key no rule matches is
an error, a target our model lacks is an error, a model key left unfilled is an error, and
every tensor is shape-checked. Tensor transforms are named in the rules, never implicit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import torch
from torch import Tensor


class KeyMapError(KeyError):
    """A checkpoint key is unknown, missing, duplicated or of the wrong shape; names the key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Transform:
    """A named tensor change applied when a rule maps a key; `inverse` undoes it for export."""

    name: str
    forward: Callable[[Tensor], Tensor]
    inverse: Callable[[Tensor], Tensor]


# fairseq stores the learned ALiBi scale as (1, 1, H, 1, 1) (older files: 4-D (1, H, 1, 1));
# ours is (H,). Any layout with one head axis flattens to (H,); shape checks catch the rest.
ALIBI_SCALE = Transform("alibi_scale", lambda t: t.reshape(-1), lambda t: t.reshape(1, 1, -1, 1, 1))


@dataclass(frozen=True)
class KeyMap:
    rules: tuple[tuple, ...]
    _compiled: list = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            src, dst = rule[0], rule[1]
            pattern = re.compile(re.escape(src).replace(r"\{\}", r"(\d+)"))
            self._compiled.append((pattern, dst, rule[2] if len(rule) > 2 else None))

    def target(self, key: str) -> Optional[tuple[str, Optional[Callable[[Tensor], Tensor]]]]:
        """(mapped key, tensor function or None), or None when no rule matches `key`."""
        for pattern, dst, transform in self._compiled:
            m = pattern.fullmatch(key)
            if m:
                return dst.format(*m.groups()), (transform.forward if transform else None)
        return None

    def inverse(self) -> "KeyMap":
        """The map in the other direction (for writing the foreign layout)."""
        inv = []
        for rule in self.rules:
            t = rule[2] if len(rule) > 2 else None
            back = (Transform(t.name, t.inverse, t.forward),) if t else ()
            inv.append((rule[1], rule[0], *back))
        return KeyMap(tuple(inv))

    def __add__(self, other: "KeyMap") -> "KeyMap":
        return KeyMap(self.rules + other.rules)


def map_state(
    state: Mapping[str, Tensor],
    keymap: KeyMap,
    expected: Optional[Mapping[str, Tensor]],
    where: str,
) -> dict[str, Tensor]:
    """Rename every tensor of `state` by `keymap`, checking against `expected` (our model's
    state dict; None skips the model checks, for export). `where` names the file/section in
    errors. Floating tensors are cast to the expected dtype."""
    out: dict[str, Tensor] = {}
    source_of: dict[str, str] = {}
    for key, tensor in state.items():
        hit = keymap.target(key)
        if hit is None:
            raise KeyMapError(f"{where}: unknown key {key!r} (no mapping rule matches it)")
        new, fn = hit
        if new in out:
            raise KeyMapError(f"{where}: keys {source_of[new]!r} and {key!r} both map to {new!r}")
        if not isinstance(tensor, Tensor):
            raise KeyMapError(f"{where}: key {key!r} holds a {type(tensor).__name__}, not a tensor")
        value = fn(tensor) if fn else tensor
        if expected is not None:
            if new not in expected:
                raise KeyMapError(f"{where}: key {key!r} maps to {new!r}, which the model does not have")
            want = expected[new]
            if tuple(value.shape) != tuple(want.shape):
                raise KeyMapError(f"{where}: key {key!r} has shape {tuple(tensor.shape)}, but the model's "
                                  f"{new!r} has shape {tuple(want.shape)}")
            if value.is_floating_point() and want.is_floating_point():
                value = value.to(want.dtype)
        out[new] = value
        source_of[new] = key
    if expected is not None:
        missing = [k for k in expected if k not in out]
        if missing:
            shown = ", ".join(repr(k) for k in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise KeyMapError(f"{where}: missing key(s) for the model's {shown}")
    return out


# --------------------------------------------------------------------------- fairseq data2vec 2.0
BLOCK_PARAMS = (
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
)
# fairseq's `modality_encoders` keys per modality config kind.
FAIRSEQ_MODALITY = {"image": "IMAGE", "audio": "AUDIO", "text": "TEXT"}


def _blocks(src: str, dst: str) -> KeyMap:
    return KeyMap(tuple((f"{src}{{}}.{p}", f"{dst}{{}}.{p}") for p in BLOCK_PARAMS))


def pairs(*pairs: tuple) -> KeyMap:
    return KeyMap(tuple(pairs))


def weight_bias(src: str, dst: str) -> KeyMap:
    """weight and bias of one layer."""
    return pairs((f"{src}.weight", f"{dst}.weight"), (f"{src}.bias", f"{dst}.bias"))


SHARED_BLOCKS = _blocks("blocks.", "encoder.blocks.") + weight_bias("norm", "encoder.norm")


def _context(m: str) -> KeyMap:
    return weight_bias(f"{m}context_encoder.norm", "modality.context_encoder.input_norm") + _blocks(
        f"{m}context_encoder.blocks.", "modality.context_encoder.blocks.")


def _decoder(m: str) -> KeyMap:
    return (weight_bias(f"{m}decoder.blocks.{{}}.0", "decoder.blocks.{}.0") + weight_bias(f"{m}decoder.proj", "decoder.proj")
            + weight_bias(f"{m}decoder.proj.{{}}", "decoder.proj.{}"))


def _local(kind: str, m: str) -> KeyMap:
    ours = "modality.local_encoder"
    if kind == "image":
        return weight_bias(f"{m}local_encoder.proj", f"{ours}.proj") + pairs(
            (f"{m}fixed_positional_encoder.positions", "modality.positions"),
            (f"{m}extra_tokens", "modality.extra_tokens"))
    if kind == "audio":
        return (pairs((f"{m}local_encoder.conv_layers.{{}}.0.weight", f"{ours}.conv_layers.{{}}.0.weight"))
                + weight_bias(f"{m}local_encoder.conv_layers.{{}}.2.1", f"{ours}.conv_layers.{{}}.2.1")
                + weight_bias(f"{m}project_features.1", f"{ours}.project_features.1")
                + weight_bias(f"{m}project_features.2", f"{ours}.project_features.2")
                + weight_bias(f"{m}relative_positional_encoder.{{}}.0", "modality.relative_positional_encoder.{}.0")
                + pairs((f"{m}alibi_scale", "modality.alibi_scale", ALIBI_SCALE)))
    if kind == "text":
        return pairs((f"{m}local_encoder.embed_tokens.weight", f"{ours}.embed_tokens.weight"),
                      (f"{m}local_encoder.embed_positions.weight", f"{ours}.embed_positions.weight")) + weight_bias(
            f"{m}local_encoder.layernorm_embedding", f"{ours}.layernorm_embedding")
    raise ValueError(f"no fairseq data2vec 2.0 key map for modality {kind!r}")


def fairseq_d2v2_student_map(kind: str) -> KeyMap:
    """fairseq `data2vec_multi` model keys -> our `Data2Vec2Model` keys."""
    m = f"modality_encoders.{FAIRSEQ_MODALITY[kind]}."
    return SHARED_BLOCKS + _local(kind, m) + _context(m) + _decoder(m)


def fairseq_d2v2_teacher_map(kind: str, encoder_only: bool) -> KeyMap:
    """fairseq `_ema` keys -> our EMA teacher module keys (ModuleDict "modality"/"encoder").

    With `ema_encoder_only` fairseq's keys are relative to the `blocks` list (`0.attn...`).
    """
    if encoder_only:
        return _blocks("", "encoder.blocks.")
    m = f"modality_encoders.{FAIRSEQ_MODALITY[kind]}."
    return SHARED_BLOCKS + _local(kind, m) + _context(m)


# Legacy keys of the released files that fairseq's loaders special-case (reference 4.3).
LEGACY_DROP = (
    re.compile(r"modality_encoders\.\w+\.encoder_mask"),
    re.compile(r"modality_encoders\.\w+\.alibi_bias"),
    re.compile(r"(decoder|target_proj)(\..*)?"),  # top-level only: patterns are full matches
)
LEGACY_RENAME = ((".positional_encoder.pos_embed", ".fixed_positional_encoder.positions"),)


def fix_legacy_fairseq(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop and rename the legacy keys listed above; everything else passes through."""
    out = {}
    for key, value in state.items():
        if any(p.fullmatch(key) for p in LEGACY_DROP):
            continue
        for old, new in LEGACY_RENAME:
            if key.endswith(old) and not key.endswith(new):
                key = key[: -len(old)] + new
        out[key] = value
    return out


# --------------------------------------------------------------------------- fused attention
@dataclass(frozen=True)
class QKVLayout:
    """How a checkpoint names the three attention projections our fused `attn.qkv` holds (rows
    q, then k, then v). `pattern` matches a separate projection's key with groups (base,
    projection name, weight|bias); `separate` and `fused` format keys from base/name/param.
    `no_key_bias`: the layout has no key bias (BEiT): zeros on import (exact: a constant score
    per query, which softmax ignores), left out on export."""

    pattern: re.Pattern
    names: tuple[str, str, str]
    separate: str
    fused: str
    no_key_bias: bool = False


def fuse_qkv(state: Mapping[str, Tensor], layout: QKVLayout, where: str) -> dict[str, Tensor]:
    """Separate q/k/v projections -> one fused projection per layer (concatenated on the output axis)."""
    out: dict[str, Tensor] = {}
    groups: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in state.items():
        m = layout.pattern.fullmatch(key)
        if m:
            groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
        else:
            out[key] = value
    q, k, v = layout.names
    for (base, param), parts in groups.items():
        if layout.no_key_bias and param == "bias" and k not in parts and q in parts:
            parts[k] = torch.zeros_like(parts[q])
        for n in layout.names:
            if n not in parts:
                missing = layout.separate.format(base=base, name=n, param=param)
                raise KeyMapError(f"{where}: missing key {missing!r} (the other attention projections are present)")
        shapes = {tuple(parts[n].shape) for n in layout.names}
        if len(shapes) != 1:
            raise KeyMapError(f"{where}: {base}.*.{param} projections have different shapes {sorted(shapes)}")
        out[layout.fused.format(base=base, param=param)] = torch.cat([parts[n] for n in layout.names], dim=0)
    return out


def split_qkv(state: Mapping[str, Tensor], layout: QKVLayout) -> dict[str, Tensor]:
    """Inverse of `fuse_qkv` (the key bias left out for `no_key_bias` layouts)."""
    fused = re.compile(re.escape(layout.fused).replace(re.escape("{base}"), "(.*)").replace(re.escape("{param}"),
                                                                                                "(weight|bias)"))
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = fused.fullmatch(key)
        if not m:
            out[key] = value
            continue
        base, param = m.groups()
        for n, chunk in zip(layout.names, value.chunk(3, dim=0)):
            if not (layout.no_key_bias and n == layout.names[1] and param == "bias"):
                out[layout.separate.format(base=base, name=n, param=param)] = chunk.clone()
    return out


# fairseq's MultiheadAttention (data2vec 1.0 speech and text).
FAIRSEQ_QKV = QKVLayout(re.compile(r"(.*)\.(q|k|v)_proj\.(weight|bias)"), ("q", "k", "v"),
                        "{base}.{name}_proj.{param}", "{base}.qkv.{param}")
