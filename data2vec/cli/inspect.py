"""data2vec inspect CHECKPOINT"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torch import Tensor

from data2vec.algorithms.multimodal import is_multimodal, modality_names
from data2vec.checkpoints.fairseq import detect_modality, stored_model_cfg
from data2vec.checkpoints.load import FORMATS, read_checkpoint, sniff
from data2vec.checkpoints.pretrained import MODEL_FILE, count_parameters, read_head, read_metadata, read_pretrained

HELP = "print what a checkpoint holds: type, modality, version, sizes, teacher, license note"

# Meta's data2vec 2.0 vision weights are CC-BY-NC (fairseq README); speech/text carry no such note.
LICENSE_NOTES = {
    "image": "data2vec 2.0 vision weights released by Meta are CC-BY-NC 4.0: non-commercial use only",
}
# data2vec 1.0 vision comes from the BEiT fork, whose weight licence our reference does not state.
BEIT_LICENSE = "see the source repository's license (facebookresearch/data2vec_vision, a BEiT fork)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a run folder or its last.pt, our checkpoint folder, a transformers Data2Vec* "
                                      "folder, a fairseq .pt or a BEiT-repository .pth file")
    p.add_argument("--from", dest="source", choices=FORMATS, help="force the format (default: detected)")
    p.add_argument("--num-heads", type=int, default=None, help="BEiT files: expected attention heads (checked)")


def run(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    source, ckpt = sniff(path)
    source = args.source or source
    if source == "ours":
        info = _ours(path)
    elif source == "fairseq" and _is_d2v2(ckpt):
        info = _fairseq(path, ckpt)
    else:
        info = _imported(read_checkpoint(path, source, args.num_heads, ckpt=ckpt))
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key + ':':<{width + 1}} {value}")
    return 0


def _sizes(student: dict[str, Tensor], teacher: Any) -> dict[str, str]:
    decoder = sum(t.numel() for k, t in student.items() if k.startswith("decoder.") or ".decoder." in k)
    return {
        "parameters": f"{count_parameters(student):,} incl. buffers"
                      + (f" (decoder {decoder:,}, pretraining only)" if decoder else ""),
        "teacher": f"yes, {count_parameters(teacher):,} parameters" if teacher else "no",
    }


def _modality(cfg: Any) -> str:
    """The input kind; a multimodal model with its modalities."""
    if is_multimodal(cfg.model):
        return f"multi ({', '.join(modality_names(cfg.model))})"
    return cfg.model.input.kind


def _head(head: Any) -> str:
    return f"{head.kind}, {head.num_outputs} outputs" if head is not None else "none (pretraining checkpoint)"


def _ours(path: Path) -> dict[str, str]:
    cfg, student, teacher = read_pretrained(path)
    kind, meta = cfg.model.input.kind, read_metadata(path / MODEL_FILE)
    enc, head = cfg.model.encoder, read_head(path)
    info = {"type": "data2vec checkpoint folder (safetensors)" + (", fine-tuned" if head else ""),
            "modality": _modality(cfg),
            "version": f"data2vec {cfg.model.version}.0",
            "architecture": f"dim {enc.dim}, {enc.depth} shared blocks, {enc.num_heads} heads",
            "fine-tuned head": _head(head)}
    info.update(_sizes(student, teacher))
    if "source" in meta:
        info["converted from"] = f"{meta['source']} ({meta.get('source_format', '?')})"
    info["license"] = _license(kind, meta.get("source_format", ""))
    return info


def _is_d2v2(ckpt: Any) -> bool:
    """A data2vec 2.0 pretraining file is summarized from its config; anything else (runs,
    1.0, BEiT, fine-tuned wrappers, transformers) is imported in full, which also validates
    every key."""
    cfg = ckpt.get("cfg") if isinstance(ckpt, dict) else None
    return isinstance(cfg, dict) and isinstance(cfg.get("model"), dict) and cfg["model"].get("_name") == "data2vec_multi"


def _imported(imp: Any) -> dict[str, str]:
    """Summary of an `Imported` checkpoint (runs, fairseq 1.0, BEiT, fine-tuned, transformers)."""
    kind, enc = imp.cfg.model.input.kind, imp.cfg.model.encoder
    info = {"type": imp.source, "modality": _modality(imp.cfg), "version": f"data2vec {imp.cfg.model.version}.0",
            "architecture": f"dim {enc.dim}, {enc.depth} blocks, {enc.num_heads} heads",
            "fine-tuned head": _head(imp.head)}
    info.update(_sizes(imp.student, imp.teacher))
    if imp.dropped:
        info["left out"] = f"{len(imp.dropped)} key(s): " + "; ".join(f"{k} ({r})" for k, r in imp.dropped[:3]) + (
            " ..." if len(imp.dropped) > 3 else "")
    info["license"] = _license(kind, imp.source)
    return info


def _fairseq(path: Path, ckpt: dict[str, Any]) -> dict[str, str]:
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
    if "Hugging Face" in source:
        return "see the model card of the Hugging Face repository the folder came from"
    if "BEiT" in source:
        return BEIT_LICENSE
    if "fairseq" in source and kind in LICENSE_NOTES:
        return LICENSE_NOTES[kind]
    if "fairseq" in source:
        return "see the fairseq release notes for these weights"
    return "no third-party weights recorded (trained with this library)"
