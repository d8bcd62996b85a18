"""One entry point for weights in any supported format (for `convert`, `inspect` and
`pretrain --init`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from torch import Tensor

from data2vec.checkpoints.imported import Imported
from data2vec.config import PretrainConfig

# "fairseq": a torch file from Meta (fairseq `.pt`, or a BEiT-repository `.pth`); "ours": our
# folder; "hf": a Hugging Face transformers Data2Vec* folder.
FORMATS = ("fairseq", "ours", "hf")


def detect_format(path: str | Path) -> str:
    """"fairseq" for a file; for a folder, "hf" when its config.json names a transformers
    `model_type`, else "ours"."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not path.is_dir():
        return "fairseq"
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "ours"  # from_pretrained names what is missing or malformed
    return "hf" if isinstance(config, dict) and "model_type" in config else "ours"


def read_checkpoint(path: str | Path, source: Optional[str] = None, num_heads: Optional[int] = None) -> Imported:
    """Everything a checkpoint holds, in our layout: config, student (or fine-tuned model)
    state, EMA teacher state, head config (fine-tuned files) and the keys left out, with why.

    `source` is "fairseq" or "ours" (default: detected). `num_heads` cross-checks the head count
    of BEiT files (which store no config). Every state has been checked key by key and shape by
    shape against the module it loads into.
    """
    source = source or detect_format(path)
    if source == "fairseq":
        from data2vec.checkpoints.fairseq_v1 import import_checkpoint

        return import_checkpoint(path, num_heads=num_heads)
    if source == "ours":
        from data2vec.checkpoints.pretrained import from_pretrained, read_head

        model, cfg, teacher = from_pretrained(path)  # a full load validates keys and shapes
        return Imported(cfg, model.state_dict(), teacher, read_head(path), "data2vec checkpoint folder")
    if source == "hf":
        return _read_hf(path)
    raise ValueError(f"{path}: unknown checkpoint format {source!r}; expected one of {FORMATS}")


def read_weights(
    path: str | Path, source: Optional[str] = None
) -> tuple[PretrainConfig, dict[str, Tensor], Optional[dict[str, Tensor]]]:
    """(config, student state dict, EMA teacher module state dict or None) of a pretraining
    checkpoint at `path` (see `read_checkpoint`).

    The student state loads into `build_model(config.model)`, the teacher state into
    `model.make_teacher().module`. A fine-tuned checkpoint is an error (it has no pretraining
    head); use `read_checkpoint` for those.
    """
    imp = read_checkpoint(path, source)
    if imp.head is not None:
        raise ValueError(f"{path}: a fine-tuned model ({imp.head.kind} head, {imp.head.num_outputs} outputs) has no "
                         "pretraining head or teacher; continued pretraining needs a pretraining checkpoint")
    return imp.cfg, imp.student, imp.teacher


def _read_hf(path: str | Path) -> Imported:
    """A transformers folder as a data2vec 1.0 checkpoint; data and training settings come from
    the matching released-architecture preset."""
    import dataclasses

    from data2vec.checkpoints.huggingface import OUR_KIND, PRESET, import_hf
    from data2vec.presets import get_preset

    dropped: dict[str, str] = {}
    model_cfg, head, state = import_hf(path, dropped=dropped)
    cfg = dataclasses.replace(get_preset(PRESET[OUR_KIND[model_cfg.input.kind]]), model=model_cfg)
    return Imported(cfg, state, None, head, "Hugging Face transformers folder", sorted(dropped.items()))
