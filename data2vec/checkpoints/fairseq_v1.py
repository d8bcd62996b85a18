"""Meta's data2vec 1.0 checkpoints and fine-tuned wrappers, in and out, without fairseq.

Reads (through the restricted unpickler of `unpickle.py`):
- fairseq `data2vec_audio` and `data2vec_text` pretraining files (reference 4.4) with their
  `_ema` teachers, and the released-file quirks (`final_proj.0.*`, `lm_head`/`emb_layer_norm`/
  `decoder.` renames, the `version` buffer of fairseq's TransformerEncoder);
- BEiT-repository (`facebookresearch/data2vec_vision`) `.pth` files: plain dicts with `model` and
  `model_ema`, no config (sizes are read off the tensors);
- fine-tuned wrappers: fairseq `wav2vec_ctc` over a 1.0 speech model, BEiT fine-tuned image
  classifiers (per-layer relative position tables, `fc_norm`, `head`), and 1.0 text models with a
  RoBERTa `classification_heads.<name>` head;
- data2vec 2.0 `data2vec_multi` files, through `fairseq.import_fairseq`.

Writes (`export_fairseq`) the same layouts, with a plain-dict `cfg` holding the fields the
importer reads, so ours -> fairseq -> ours is exact.

Every key of a file is mapped, shape-checked, or dropped by an explicit rule whose reason is
returned in `Imported.dropped`; anything else is an error naming the key.

This module dispatches; the formats live in `fairseq_audio_v1`, `fairseq_text_v1`, `beit` and
`fairseq_v2_finetuned`, their shared helpers in `fairseq_common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from data2vec.checkpoints.beit import import_beit, export_beit, is_beit_state
from data2vec.checkpoints.fairseq_audio_v1 import import_audio_v1, import_ctc, export_audio_v1
from data2vec.checkpoints.fairseq_common import input_kind
from data2vec.checkpoints.fairseq_text_v1 import import_text_v1, export_text_v1
from data2vec.checkpoints.fairseq_v2_finetuned import import_v2_classifier, export_v2, export_v2_finetuned
from data2vec.checkpoints.imported import Imported
from data2vec.checkpoints.keymaps import KeyMapError
from data2vec.checkpoints.unpickle import CheckpointReadError, load_checkpoint, resolve_interpolations
from data2vec.config import ConfigError, PretrainConfig
from data2vec.heads.finetuned import HeadConfig


# --------------------------------------------------------------------------- dispatch
def import_checkpoint(path: str | Path, num_heads: Optional[int] = None,
                      ckpt: Optional[dict[str, Any]] = None) -> Imported:
    """Read any supported Meta checkpoint file (see the module docstring); `ckpt` is its
    contents when the caller has loaded them already. Errors name the file and the key."""
    path = Path(path)
    try:
        return _import_checkpoint(path, num_heads, ckpt)
    except (KeyMapError, ConfigError) as e:
        if str(path) in str(e):
            raise
        raise type(e)(f"{path}: {e}") from None


def _import_checkpoint(path: Path, num_heads: Optional[int], ckpt: Optional[dict[str, Any]]) -> Imported:
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    cfg = ckpt.get("cfg")
    dropped: list[tuple[str, str]] = []
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        resolve_interpolations(cfg, cfg)
        model_cfg = cfg["model"]
        name = model_cfg.get("_name")
        if name == "data2vec_multi":
            from data2vec.checkpoints.fairseq import import_fairseq

            c, s, t = import_fairseq(path, ckpt)
            return Imported(c, s, t, None, "fairseq data2vec_multi", dropped)
        if not isinstance(ckpt.get("model"), dict):
            raise CheckpointReadError(f"{path}: checkpoint has no 'model' state dict")
        state = dict(ckpt["model"])
        if name == "data2vec_audio":
            return import_audio_v1(ckpt, model_cfg, path, state, dropped)
        if name == "data2vec_text" or (isinstance(name, str) and name.startswith("roberta")
                                       and any(k.startswith(("encoder.sentence_encoder.", "decoder.sentence_encoder."))
                                               for k in state)):
            return import_text_v1(ckpt, model_cfg, path, state, dropped)
        if name == "wav2vec_ctc":
            return import_ctc(ckpt, model_cfg, path, state, dropped)
        if name in ("mae_image_classification", "data2vec_text_classification"):
            return import_v2_classifier(ckpt, model_cfg, path, state, dropped)
        raise CheckpointReadError(
            f"{path}: cfg.model._name is {name!r}; supported: data2vec_multi, data2vec_audio, data2vec_text "
            "(and RoBERTa-style classifiers over it), wav2vec_ctc, mae_image_classification, "
            "data2vec_text_classification")
    model = ckpt.get("model") if isinstance(ckpt.get("model"), dict) else ckpt
    if is_beit_state(model):
        return import_beit(ckpt, path, num_heads, dropped)
    has_args = ckpt.get("args") is not None
    raise CheckpointReadError(
        f"{path}: neither a fairseq 'cfg.model' checkpoint nor a BEiT-repository state dict"
        + (" (it stores old-style 'args'; only 'cfg' files are supported)" if has_args else ""))


# --------------------------------------------------------------------------- export
def export_fairseq(
    path: str | Path,
    cfg: PretrainConfig,
    student: dict[str, Tensor],
    teacher: Optional[dict[str, Tensor]] = None,
    head: Optional[HeadConfig] = None,
    drop_k_bias: bool = False,
) -> Path:
    """Write `student` (and `teacher`, the state of `make_teacher().module`) in Meta's layout.

    Pretraining models: data2vec 2.0 -> `data2vec_multi`; 1.0 audio -> `data2vec_audio`; 1.0
    text -> `data2vec_text`; 1.0 BEiT -> a BEiT-repository `.pth` dict (`model`, `model_ema`,
    `args`). Fine-tuned (`head` set): 1.0 audio CTC -> `wav2vec_ctc`; 1.0 text classifier ->
    `data2vec_text` + `classification_heads.sentence_classification_head`; BEiT classifier ->
    a BEiT fine-tuned `.pth`. `cfg` is a plain dict (not OmegaConf) with the fields our
    importer reads.
    """
    path = Path(path)
    student = {k: v.detach().cpu() for k, v in student.items()}
    teacher = {k: v.detach().cpu() for k, v in teacher.items()} if teacher is not None else None
    version, kind, where = cfg.model.version, input_kind(cfg), f"export {path}"
    ckpt: dict[str, Any]
    if version == 2 and head is None:
        ckpt = export_v2(cfg, student, teacher, where)
    elif version == 2:
        ckpt = export_v2_finetuned(cfg, student, head, where)
    elif version == 1 and kind == "audio":
        ckpt = export_audio_v1(cfg, student, teacher, head, where)
    elif version == 1 and kind == "text":
        ckpt = export_text_v1(cfg, student, teacher, head, where)
    elif version == 1 and kind == "beit":
        ckpt = export_beit(cfg, student, teacher, head, drop_k_bias, where)
    else:
        what = f"data2vec {version}.0 {kind}" + (f" with a {head.kind} head" if head else "")
        raise ValueError(f"{where}: no fairseq/BEiT layout for a {what} model")
    torch.save(ckpt, path)
    return path
