"""Our own checkpoint format: a folder with `config.json`, `model.safetensors` and, for
continued pretraining, `teacher.safetensors`. Loading it never unpickles anything.

Fine-tuned models (`heads.finetuned.EncoderWithHead`) use the same folder: `config.json` is the
backbone's `PretrainConfig` plus a `"head"` entry with the `HeadConfig` fields, and
`model.safetensors` holds the `modality.*`, `encoder.*` and `head.*` tensors."""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from data2vec.config import ConfigError, PretrainConfig, from_dict, save_config
from data2vec.heads.finetuned import HEAD_KINDS, HeadConfig
from data2vec.models import build_model

CONFIG_FILE, MODEL_FILE, TEACHER_FILE = "config.json", "model.safetensors", "teacher.safetensors"
FORMAT_NAME, FORMAT_VERSION = "data2vec", 1
HEAD_ENTRY = "head"  # config.json entry of fine-tuned models (HeadConfig fields)


def _unwrap(model: nn.Module) -> nn.Module:
    # DDP (`module.`) and torch.compile (`_orig_mod.`) wrappers must not leak into key names.
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _tensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses shared storage; a contiguous copy per tensor is exact and safe.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_pretrained(
    model: nn.Module | dict[str, Tensor],
    cfg: PretrainConfig,
    directory: str | Path,
    teacher: Optional[Any] = None,
    metadata: Optional[dict[str, str]] = None,
    head: Optional[Any] = None,
) -> Path:
    """Write `cfg` and the model's (and teacher module's) tensors to `directory`.

    `model` may be a module (DDP/compile wrappers are unwrapped) or a state dict; `teacher` an
    `EMATeacher`, its module, or a state dict. `metadata` (str -> str, e.g. the source file) is
    stored in the safetensors header. `head` (a `HeadConfig`) marks a fine-tuned
    `EncoderWithHead` built by `build_model(cfg.model, head)`. Returns the directory.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), **(metadata or {})}
    state = model if isinstance(model, dict) else _unwrap(model).state_dict()
    save_config(cfg, str(out / CONFIG_FILE))
    if head is not None:
        data = json.loads((out / CONFIG_FILE).read_text())
        data[HEAD_ENTRY] = asdict(head)
        (out / CONFIG_FILE).write_text(json.dumps(data, indent=2))
    save_file(_tensors(state), str(out / MODEL_FILE), metadata=meta)
    if teacher is not None:
        tstate = teacher if isinstance(teacher, dict) else _unwrap(teacher).state_dict()
        save_file(_tensors(tstate), str(out / TEACHER_FILE), metadata=meta)
    elif (out / TEACHER_FILE).exists():
        (out / TEACHER_FILE).unlink()  # a stale teacher would not match the new student
    return out


def read_config(path: str | Path) -> tuple[PretrainConfig, Optional[Any]]:
    """(PretrainConfig, HeadConfig or None) of a `config.json`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    head = data.pop(HEAD_ENTRY, None)
    cfg = from_dict(PretrainConfig, data)
    if head is not None:
        if not isinstance(head, dict):
            raise ConfigError(f"{path}: '{HEAD_ENTRY}' must be an object with the HeadConfig fields")
        head = _head_config(head, path)
    return cfg, head


def _head_config(data: dict, path: Any) -> Any:
    # Not through from_dict: its "kind" field means a registered config kind, which HeadConfig's is not.
    types = typing.get_type_hints(HeadConfig)
    known = {f.name for f in fields(HeadConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: {HEAD_ENTRY}: unknown key(s) {unknown}; valid: {sorted(known)}")
    for name, value in data.items():
        if type(value) is not types[name]:
            raise ConfigError(f"{path}: {HEAD_ENTRY}.{name}: expected {types[name].__name__}, got {value!r}")
    if data.get("kind") not in HEAD_KINDS:
        raise ConfigError(f"{path}: {HEAD_ENTRY}.kind={data.get('kind')!r}; expected one of {HEAD_KINDS}")
    return HeadConfig(**data)


def read_head(directory: str | Path) -> Optional[Any]:
    """The `HeadConfig` of a fine-tuned folder, None for a pretraining one."""
    return read_config(Path(directory) / CONFIG_FILE)[1]


def read_pretrained(directory: str | Path) -> tuple[PretrainConfig, dict[str, Tensor], Optional[dict[str, Tensor]]]:
    """(config, student tensors, teacher tensors or None) of a saved folder, without a model.
    For a fine-tuned folder the student tensors are the `EncoderWithHead`'s (see `read_head`)."""
    d = Path(directory)
    if not (d / CONFIG_FILE).is_file() or not (d / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{d}: not a data2vec checkpoint folder (needs {CONFIG_FILE} and {MODEL_FILE})")
    cfg, _ = read_config(d / CONFIG_FILE)
    teacher = read_safetensors(d / TEACHER_FILE) if (d / TEACHER_FILE).is_file() else None
    return cfg, read_safetensors(d / MODEL_FILE), teacher


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Tensors of a safetensors file; an unreadable or truncated file is an error naming it."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file: {e}") from e


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of `path` (empty when none)."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def from_pretrained(directory: str | Path) -> tuple[nn.Module, PretrainConfig, Optional[dict[str, Tensor]]]:
    """Rebuild the model from a saved folder. Returns (model, config, teacher state or None);
    the teacher state loads into `model.make_teacher().module`. Keys must match exactly.
    A fine-tuned folder gives an `EncoderWithHead` (its `HeadConfig`: `read_head`)."""
    cfg, state, teacher = read_pretrained(directory)
    head = read_head(directory)
    model = build_model(cfg.model, head)
    load_strict(model, state, Path(directory) / MODEL_FILE)
    if teacher is not None and hasattr(model, "make_teacher"):
        load_strict(model.make_teacher().module, teacher, Path(directory) / TEACHER_FILE)
    return model, cfg, teacher


def load_strict(module: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """load_state_dict(strict) with errors that name the file and the keys."""
    own = module.state_dict()
    unknown = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if unknown or missing:
        raise KeyError(f"{path}: unknown key(s) {unknown[:5]}, missing key(s) {missing[:5]}")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise KeyError(f"{path}: key {k!r} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    module.load_state_dict(state)


def count_parameters(state: dict[str, Any]) -> int:
    return sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
