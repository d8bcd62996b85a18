"""Our own checkpoint format: a folder with `config.json`, `model.safetensors` and, for
continued pretraining, `teacher.safetensors`. Loading it never unpickles anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from data2vec.config import PretrainConfig, load_config, save_config

CONFIG_FILE, MODEL_FILE, TEACHER_FILE = "config.json", "model.safetensors", "teacher.safetensors"
FORMAT_NAME, FORMAT_VERSION = "data2vec", 1


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
) -> Path:
    """Write `cfg` and the model's (and teacher module's) tensors to `directory`.

    `model` may be a module (DDP/compile wrappers are unwrapped) or a state dict; `teacher` an
    `EMATeacher`, its module, or a state dict. `metadata` (str -> str, e.g. the source file) is
    stored in the safetensors header. Returns the directory.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), **(metadata or {})}
    state = model if isinstance(model, dict) else _unwrap(model).state_dict()
    save_config(cfg, str(out / CONFIG_FILE))
    save_file(_tensors(state), str(out / MODEL_FILE), metadata=meta)
    if teacher is not None:
        tstate = teacher if isinstance(teacher, dict) else _unwrap(teacher).state_dict()
        save_file(_tensors(tstate), str(out / TEACHER_FILE), metadata=meta)
    elif (out / TEACHER_FILE).exists():
        (out / TEACHER_FILE).unlink()  # a stale teacher would not match the new student
    return out


def read_pretrained(directory: str | Path) -> tuple[PretrainConfig, dict[str, Tensor], Optional[dict[str, Tensor]]]:
    """(config, student tensors, teacher tensors or None) of a saved folder, without a model."""
    d = Path(directory)
    if not (d / CONFIG_FILE).is_file() or not (d / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{d}: not a data2vec checkpoint folder (needs {CONFIG_FILE} and {MODEL_FILE})")
    cfg = load_config(str(d / CONFIG_FILE))
    return cfg, _load(d / MODEL_FILE), (_load(d / TEACHER_FILE) if (d / TEACHER_FILE).is_file() else None)


def _load(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file: {e}") from e


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of `path` (empty when none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def from_pretrained(directory: str | Path) -> tuple[nn.Module, PretrainConfig, Optional[dict[str, Tensor]]]:
    """Rebuild the model from a saved folder. Returns (model, config, teacher state or None);
    the teacher state loads into `model.make_teacher().module`. Keys must match exactly."""
    from data2vec.train.pretrain import build_model

    cfg, state, teacher = read_pretrained(directory)
    model = build_model(cfg.model)
    _load_strict(model, state, Path(directory) / MODEL_FILE)
    if teacher is not None and hasattr(model, "make_teacher"):
        _load_strict(model.make_teacher().module, teacher, Path(directory) / TEACHER_FILE)
    return model, cfg, teacher


def _load_strict(module: nn.Module, state: dict[str, Tensor], path: Path) -> None:
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
