"""Frozen dataclass configs, (de)serialization and type-checked dotted overrides.

A run is described by one `PretrainConfig` = model + data + train. Modality-specific parts
(`model.input`, `data`, fine-tuning `data`) are "kinded" configs: each class has a `kind` field
and is registered with `@register_kind`, so adding a modality adds a class in its own module
and never edits this file. The package finds every modality itself (`data2vec.modalities`).

String choices are `Literal` types; `check_choices` validates them, and `from_dict`,
`apply_overrides` and the model builders call it, so no other code re-checks a choice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

_KINDS: dict[tuple[type, str], type] = {}  # (kinded base class, kind) -> class


def kinded_base(cls: type) -> type:
    """The base of a kinded config class: the class in its MRO that declares `kind = ""`."""
    for base in cls.__mro__:
        fields = getattr(base, "__dataclass_fields__", {})
        if "kind" in fields and fields["kind"].default == "":
            return base
    raise TypeError(f"{cls.__name__} has no kinded base (a dataclass with `kind: str = \"\"`)")


def register_kind(cls: type) -> type:
    """Class decorator: make a kinded config constructible from a dict by its `kind`.

    Kinds are unique per base class (InputConfig, DataConfig, LabeledDataConfig), so "image"
    can name one of each.
    """
    kind = cls.__dataclass_fields__["kind"].default
    key = (kinded_base(cls), kind)
    if key in _KINDS and _KINDS[key].__qualname__ != cls.__qualname__:
        raise ValueError(f"config kind {kind!r} of {key[0].__name__} registered twice")
    _KINDS[key] = cls
    return cls


class ConfigError(ValueError):
    """A config file, dict or override is invalid; the message names the field."""


# --------------------------------------------------------------------------- model parts
@dataclass(frozen=True)
class EncoderConfig:
    """The shared Transformer (also used for modality prenet blocks).

    `norm_first=False` is the post-LN block of data2vec 2.0 / wav2vec 2.0 / RoBERTa;
    `True` is the pre-LN block of ViT/BEiT (data2vec 1.0 vision), which adds a final norm.
    """

    dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_first: bool = False
    final_norm: bool = True  # pre-LN only: end with a LayerNorm (False: transformers' mean-pooling vision models)
    layer_scale_init: float = 0.0  # 0 disables layer scale
    dropout: float = 0.0  # after attention and after the MLP
    attn_dropout: float = 0.0
    activation_dropout: float = 0.0  # inside the MLP, after GELU
    drop_path: float = 0.0  # maximum; rises linearly over the blocks
    layer_drop: float = 0.0
    norm_eps: float = 1e-6


@dataclass(frozen=True)
class DecoderConfig:
    """The light convolutional decoder of data2vec 2.0 (reference section 2.6)."""

    dim: int = 384
    layers: int = 5
    kernel: int = 5
    groups: int = 16
    residual: bool = True
    projection_layers: int = 1  # 1: Linear; 2: Linear-GELU-Linear
    projection_ratio: float = 2.0
    input_dropout: float = 0.0


@dataclass(frozen=True)
class TargetConfig:
    """How teacher layers become regression targets (reference sections 1.5, 2.3)."""

    top_k: int = 8
    layer: Literal["ffn", "block"] = "ffn"  # "ffn": FFN output before the last residual; "block": end-of-block (1.0 vision)
    instance_norm_layers: bool = True
    layer_norm_layers: bool = False
    layer_norm_final: bool = False
    instance_norm_final: bool = False


@dataclass(frozen=True)
class LossConfig:
    beta: float = 0.0  # 0: L2; >0: smooth L1 with this beta
    scale: Optional[float] = None  # None: 1/sqrt(D)
    cls_weight: float = 0.0  # data2vec 2.0 image CLS loss weight


@dataclass(frozen=True)
class TeacherConfig:
    """EMA teacher. `scope` says which parts are averaged; the rest is shared with the student.

    all: the whole backbone (image); context: everything after the local encoder (audio);
    blocks: only the shared Transformer blocks (text).
    `copied` names teacher parameters (by prefix, e.g. "modality.local_encoder") that are copied
    from the student at every update instead of averaged: fairseq's `skip_keys` (data2vec 1.0
    text embeddings, speech positional convs).
    """

    decay: float = 0.999
    end_decay: float = 0.9999
    anneal_steps: int = 30_000
    scope: Literal["all", "context", "blocks"] = "all"
    copied: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputConfig:
    """Base of the modality input configs; subclasses set `kind`."""

    kind: str = ""


@dataclass(frozen=True)
class ModelConfig:
    """version 2: data2vec 2.0 (student drops masked tokens, conv decoder, M views);
    version 1: data2vec 1.0 (student sees mask tokens, regression head = `decoder.projection_*`)."""

    version: int = 2
    input: InputConfig = field(default_factory=InputConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    clone_batch: int = 1  # M masked views per sample sharing one teacher pass
    min_target_std: float = 0.0  # collapse guard, 0 disables
    min_pred_std: float = 0.0
    collapse_check_after: int = 5000


# --------------------------------------------------------------------------- run parts
@dataclass(frozen=True)
class DataConfig:
    """Base of the data configs; subclasses set `kind`."""

    kind: str = ""


@dataclass(frozen=True)
class LabeledDataConfig:
    """Base of the fine-tuning data configs; each task's data module registers its kind."""

    kind: str = ""


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-3
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.05
    # True: every parameter decays (fairseq's plain Adam: 2.0 audio, 1.0 audio/text); False: biases,
    # norms and ALiBi scales get none (fairseq's composite optimizer for 2.0 image/text; BEiT).
    decay_all_params: bool = False
    warmup_steps: int = 0
    schedule: Literal["cosine", "tri_stage"] = "cosine"  # "cosine" to min_lr, or fairseq "tri_stage" (warm-up, hold, decay to min_lr)
    hold_steps: int = 0  # tri_stage: steps at the peak lr after warm-up
    max_steps: int = 1000
    # The global batch: samples per optimizer step over all ranks, before the M masked copies
    # (length-bucketed audio: the most utterances in one bucket; see data.buckets_per_step).
    batch_size: int = 16
    micro_batch: int = 0  # samples per rank per forward pass; 0: batch_size / world size (no accumulation)
    parallel: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: "ddp" (replicas) or "fsdp" (FSDP2 sharding)
    compile: bool | Literal["auto"] = False  # torch.compile the blocks of student and teacher: true, false or "auto"
    clip_norm: float = 4.0  # 0 disables
    bf16: bool | Literal["auto"] = "auto"  # bf16 autocast: true, false, or "auto" (CUDA, or a CPU with native BF16)
    seed: int = 1
    device: str = "auto"
    num_workers: int | Literal["auto"] = "auto"  # data loader processes; "auto": from the CPUs this process may use
    log_every: int = 10
    ckpt_every: int = 500
    time_limit_min: float = 0.0  # 0: no limit; else stop (and save) after this many minutes

    def __post_init__(self) -> None:
        if isinstance(self.num_workers, int) and self.num_workers < 0:
            raise ConfigError(f"train.num_workers={self.num_workers!r}: expected a count >= 0 or auto")


@dataclass(frozen=True)
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------- (de)serialization
def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-data dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _legacy_accumulation(train: dict[str, Any]) -> dict[str, Any]:
    """Pretraining configs written before `train.batch_size` became the global batch held
    `batch_size` per micro-batch and `grad_accum` micro-batches per step: the same step is
    `batch_size * grad_accum` samples in `batch_size` micro-batches, so old runs still load."""
    train = dict(train)
    accum = train.pop("grad_accum")
    if isinstance(accum, int) and accum > 1 and "micro_batch" not in train:
        per_micro = train.get("batch_size", TrainConfig.batch_size)
        train.update(batch_size=per_micro * accum, micro_batch=per_micro)
    return train


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build config `cls` from a plain dict; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {type(data).__name__}")
    if "kind" in cls.__dataclass_fields__ and data.get("kind"):
        base = kinded_base(cls)
        key = (base, data["kind"])
        if key not in _KINDS:
            _import_builtin_kinds()
        if key not in _KINDS:
            known = sorted(k for b, k in _KINDS if b is base)
            raise ConfigError(f"{path or 'config'}.kind: unknown {base.__name__} kind {data['kind']!r}; known: {known}")
        cls = _KINDS[key]
    if cls is TrainConfig and "grad_accum" in data:
        data = _legacy_accumulation(data)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{path or cls.__name__}: unknown key(s) {sorted(unknown)}; valid: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{path}.{name}" if path else name)
    return cls(**kwargs)


def _import_builtin_kinds() -> None:
    """Kinded configs register on import; the modality registry imports every modality and
    the modules that hold its data and fine-tuning kinds."""
    from data2vec.modalities.registry import load_everything

    load_everything()


def _check_choice(choices: tuple[Any, ...], value: Any, path: str) -> Any:
    # `type(value) is type(c)`: True must not pass for 1, nor 1 for True.
    if any(value == c and type(value) is type(c) for c in choices):
        return value
    raise ConfigError(f"{path}={value!r}: expected one of {', '.join(map(repr, choices))}")


def _union_text(inner: list[Any]) -> str:
    """"true, false or 'auto'" for bool | Literal["auto"]."""
    parts = [p for a in inner for p in (map(repr, typing.get_args(a)) if typing.get_origin(a) is Literal
                                        else ("true", "false") if a is bool else (a.__name__,))]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def check_choices(cfg: Any, path: str = "") -> Any:
    """Check every field of config `cfg` (recursively) against its type, `Literal` choices
    included, as `from_dict` does; return `cfg` or raise ConfigError naming the field. For
    configs built in Python (presets, tests), which never went through `from_dict`."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value):
            check_choices(value, where)
        elif isinstance(value, tuple) and any(dataclasses.is_dataclass(v) for v in value):
            for i, v in enumerate(value):  # a tuple of sections, e.g. a multimodal model's branches
                check_choices(v, f"{where}[{i}]")
        else:
            _convert(hints[f.name], list(value) if isinstance(value, tuple) else value, where)
    return cfg


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return _check_choice(typing.get_args(tp), value, path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(tp, value, path)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) > 1:  # e.g. int | Literal["auto"]: one of the plain types, or one of the choices
            if any(type(value) is a for a in inner):
                return value
            if any(typing.get_origin(a) is Literal and value in typing.get_args(a) for a in inner):
                return value
            raise ConfigError(f"{path}={value!r}: expected {_union_text(inner)}")
        return _convert(inner[0], value, path)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, path) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, path) for a, v in zip(args, value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: expected a finite number, got {value!r}")
    if tp in (int, float, str, bool) and not (type(value) is tp):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value


# --------------------------------------------------------------------------- overrides
def parse_value(tp: Any, text: str, path: str) -> Any:
    """Parse override text `text` as type `tp` (int, float, bool, str, Literal, Optional, tuples)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return _check_choice(typing.get_args(tp), text, path)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alt in inner:  # the first alternative that parses, e.g. bool before str
            try:
                return parse_value(alt, text, path)
            except ConfigError as e:
                error = e
        raise error if len(inner) == 1 else ConfigError(f"{path}={text!r}: expected {_union_text(inner)}")
    if origin is tuple:
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(args[0], p.strip(), path) for p in parts)
        if len(parts) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(parse_value(a, p.strip(), path) for a, p in zip(args, parts))
    try:
        if tp is bool:
            low = text.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if tp is int:
            return int(text)
        if tp is float:
            value = float(text)
            if not math.isfinite(value):
                raise ConfigError(f"{path}: expected a finite number, got {text!r}")
            return value
        if tp is str:
            return text
    except ValueError:
        raise ConfigError(f"{path}: expected {tp.__name__}, got {text!r}") from None
    raise ConfigError(f"{path}: cannot override a field of type {tp}")


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Return `cfg` with dotted `key=value` overrides applied, e.g. `train.lr=3e-4`.

    Unknown keys and values of the wrong type raise ConfigError naming the key.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, text = item.split("=", 1)
        cfg = _set_path(cfg, key.strip().split("."), text.strip(), key.strip())
    return cfg


def _set_path(obj: Any, keys: list[str], text: str, full: str) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    if keys[0] not in names:
        where = full.rsplit(".", len(keys))[0] if len(keys) < len(full.split(".")) else "config"
        raise ConfigError(f"unknown config key {full!r}: {where} has no field {keys[0]!r}; valid: {sorted(names)}")
    current = getattr(obj, keys[0])
    if len(keys) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"unknown config key {full!r}: {keys[0]!r} is not a section")
        return dataclasses.replace(obj, **{keys[0]: _set_path(current, keys[1:], text, full)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"config key {full!r} is a section; set one of its fields")
    if keys[0] == "kind":
        raise ConfigError(f"config key {full!r} cannot be overridden; choose another preset")
    tp = typing.get_type_hints(type(obj))[keys[0]]
    return dataclasses.replace(obj, **{keys[0]: parse_value(tp, text, full)})


def save_config(cfg: Any, path: str) -> None:
    with open(path, "w") as f:
        json.dump(to_dict(cfg), f, indent=2)


def load_config(path: str, cls: type = PretrainConfig) -> Any:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:  # ValueError: invalid JSON or not UTF-8
        raise ConfigError(f"cannot read config {path}: {e}") from e
    return from_dict(cls, data)
