"""One entry point for weights in any supported format (for `convert` and `pretrain --init`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch import Tensor

from data2vec.config import PretrainConfig

FORMATS = ("fairseq", "ours")


def detect_format(path: str | Path) -> str:
    """"ours" for a folder with config.json, "fairseq" for a file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return "ours" if path.is_dir() else "fairseq"


def read_weights(
    path: str | Path, source: Optional[str] = None
) -> tuple[PretrainConfig, dict[str, Tensor], Optional[dict[str, Tensor]]]:
    """(config, student state dict, EMA teacher module state dict or None) from `path`.

    `source` is "fairseq" or "ours" (default: detected). The student state loads into
    `build_model(config.model)`, the teacher state into `model.make_teacher().module`; both
    have been checked key by key and shape by shape against those modules.
    """
    source = source or detect_format(path)
    if source == "fairseq":
        from data2vec.checkpoints.fairseq import import_fairseq

        return import_fairseq(path)
    if source == "ours":
        from data2vec.checkpoints.pretrained import from_pretrained

        model, cfg, teacher = from_pretrained(path)  # a full load validates keys and shapes
        return cfg, model.state_dict(), teacher
    raise ValueError(f"{path}: unknown checkpoint format {source!r}; expected one of {FORMATS}")
