"""data2vec convert [--from run|ours|fairseq|hf] IN [--to ours|fairseq|hf] OUT"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from torch import Tensor

from data2vec.checkpoints.fairseq_v1 import export_fairseq
from data2vec.checkpoints.huggingface import export_hf
from data2vec.checkpoints.load import FORMATS, read_checkpoint, sniff
from data2vec.checkpoints.multimodal import require_one_modality
from data2vec.checkpoints.pretrained import MODEL_FILE, read_metadata, save_pretrained
from data2vec.config import PretrainConfig
from data2vec.heads.finetuned import HeadConfig
from data2vec.models import build_model

HELP = ("convert a checkpoint (a run folder or its last.pt, Meta's fairseq .pt / BEiT .pth, data2vec 1.0 or 2.0, "
        "pretrained or fine-tuned, a Hugging Face Data2Vec* folder, or our folder) to our safetensors folder, "
        "Meta's layout or transformers'")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="a run folder or its last.pt, a fairseq .pt / BEiT .pth file, our checkpoint folder, "
                                 "or a transformers folder")
    p.add_argument("--from", dest="source", choices=FORMATS,
                   help="input format (default: detected from the content: a run's last.pt or checkpoints/ folder, "
                        "our folder, a transformers folder (config.json with a model_type), else fairseq/BEiT)")
    p.add_argument("--to", dest="target", choices=["ours", "fairseq", "hf"], default="ours",
                   help="output format: our folder, a fairseq-layout .pt (BEiT .pth layout for 1.0 vision), or a "
                        "transformers folder (data2vec 1.0 models; loads with Data2Vec*.from_pretrained)")
    p.add_argument("output", help="folder to write (--to ours / hf), or file (--to fairseq)")
    p.add_argument("--no-teacher", action="store_true", help="leave out the EMA teacher")
    p.add_argument("--modality", help="write only this modality of a multimodal checkpoint, as a single-modality one "
                                      "(Meta's and transformers' layouts hold one modality)")
    p.add_argument("--num-heads", type=int, default=None,
                   help="BEiT files only: expected attention heads (checked against the relative-position table)")
    p.add_argument("--drop-k-bias", action="store_true",
                   help="--to fairseq, 1.0 vision: leave out a non-zero k part of the qkv bias (BEiT has none; it "
                        "cannot change attention)")


def run(args: argparse.Namespace) -> int:
    source, ckpt = (args.source, None) if args.source else sniff(args.input)
    imp = read_checkpoint(args.input, source, num_heads=args.num_heads, ckpt=ckpt, modality=args.modality)
    if args.target != "ours":
        require_one_modality(imp.cfg, args.input)
    cfg, student, teacher, head = imp.cfg, imp.student, imp.teacher, imp.head
    if args.no_teacher:
        teacher = None
    for key, reason in imp.dropped:
        print(f"left out {key}: {reason}")
    what = f"{cfg.model.input.kind}, data2vec {cfg.model.version}.0"
    if head is not None:
        what += f", fine-tuned {head.kind} head with {head.num_outputs} outputs"
    kept = "with" if teacher is not None else "without"
    if args.target == "fairseq":
        export_fairseq(args.output, cfg, student, teacher, head, drop_k_bias=args.drop_k_bias)
        print(f"wrote {args.output} (fairseq layout; {what}, {kept} EMA teacher)")
        return 0
    if args.target == "hf":
        _export_hf(cfg, student, head, args.output)
        print(f"wrote {args.output} (transformers layout; {what}; the EMA teacher has no place there)")
        return 0
    # Keep the original provenance through ours -> ours copies (it carries the license note).
    meta = {"source": Path(args.input).name, "source_format": imp.source if source not in ("ours", "run") else "data2vec"}
    if source == "ours":
        old = read_metadata(Path(args.input) / MODEL_FILE)
        meta.update({k: old[k] for k in ("source", "source_format") if k in old})
    save_pretrained(student, cfg, args.output, teacher=teacher, metadata=meta, head=head)
    print(f"wrote {args.output} ({what}, {kept} EMA teacher)")
    return 0


def _export_hf(cfg: PretrainConfig, student: dict[str, Tensor], head: Optional[HeadConfig], output: str) -> None:
    model = build_model(cfg.model, head)
    model.load_state_dict(student)
    export_hf(model, cfg.model, head, output)
