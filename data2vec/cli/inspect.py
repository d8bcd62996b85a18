"""data2vec inspect CHECKPOINT"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torch import Tensor

from data2vec.checkpoints.pretrained import MODEL_FILE, count_parameters, read_metadata, read_pretrained

HELP = "print what a checkpoint holds: type, modality, version, sizes, teacher, license note"

# Meta's data2vec 2.0 vision weights are CC-BY-NC (fairseq README); speech/text carry no such note.
LICENSE_NOTES = {
    "image": "data2vec 2.0 vision weights released by Meta are CC-BY-NC 4.0: non-commercial use only",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="our checkpoint folder or a fairseq .pt file")


def run(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    info = _ours(path) if path.is_dir() else _fairseq(path)
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key + ':':<{width + 1}} {value}")
    return 0


def _sizes(student: dict[str, Tensor], teacher: Any) -> dict[str, str]:
    decoder = sum(t.numel() for k, t in student.items() if k.startswith("decoder.") or ".decoder." in k)
    return {
        "parameters": f"{count_parameters(student):,} incl. buffers (decoder {decoder:,}, pretraining only)",
        "teacher": f"yes, {count_parameters(teacher):,} parameters" if teacher else "no",
    }


def _ours(path: Path) -> dict[str, str]:
    cfg, student, teacher = read_pretrained(path)
    kind, meta = cfg.model.input.kind, read_metadata(path / MODEL_FILE)
    enc = cfg.model.encoder
    info = {"type": "data2vec checkpoint folder (safetensors)", "modality": kind,
            "version": f"data2vec {cfg.model.version}.0",
            "architecture": f"dim {enc.dim}, {enc.depth} shared blocks, {enc.num_heads} heads"}
    info.update(_sizes(student, teacher))
    if "source" in meta:
        info["converted from"] = f"{meta['source']} ({meta.get('source_format', '?')})"
    info["license"] = _license(kind, meta.get("source_format", ""))
    return info


def _fairseq(path: Path) -> dict[str, str]:
    from data2vec.checkpoints.fairseq import detect_modality, stored_model_cfg
    from data2vec.checkpoints.unpickle import load_checkpoint

    ckpt = load_checkpoint(path)
    model_cfg = stored_model_cfg(ckpt, path)
    state = dict(ckpt.get("model") or {})
    ema = state.pop("_ema", None)
    kind = detect_modality(model_cfg, state, path)
    info = {"type": f"fairseq checkpoint ({model_cfg.get('_name')})", "modality": kind, "version": "data2vec 2.0",
            "architecture": f"dim {model_cfg.get('embed_dim')}, {model_cfg.get('depth')} shared blocks, "
                            f"{model_cfg.get('num_heads')} heads"}
    info.update(_sizes({k: v for k, v in state.items() if isinstance(v, Tensor)}, ema))
    info["license"] = _license(kind, "fairseq")
    return info


def _license(kind: str, source: str) -> str:
    if "fairseq" in source and kind in LICENSE_NOTES:
        return LICENSE_NOTES[kind]
    if "fairseq" in source:
        return "see the fairseq release notes for these weights"
    return "no third-party weights recorded (trained with this library)"
