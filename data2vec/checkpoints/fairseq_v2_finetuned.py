"""data2vec 2.0 files beyond `fairseq.import_fairseq`: the fine-tuned classifiers
(`mae_image_classification`, `data2vec_text_classification`) in, and every 2.0 layout out
(`data2vec_multi`, and the `wav2vec_ctc` / classifier wrappers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import Tensor

from data2vec.checkpoints.fairseq import MODALITY_FIELDS, MODEL_FIELDS
from data2vec.checkpoints.fairseq_common import W2V, drop_matching, export_map, input_kind, model_keys
from data2vec.checkpoints.imported import Imported
from data2vec.checkpoints.keymaps import (
    FAIRSEQ_MODALITY, KeyMap, KeyMapError, weight_bias, fairseq_d2v2_student_map, fairseq_d2v2_teacher_map, map_state,
)
from data2vec.checkpoints.unpickle import CheckpointReadError
from data2vec.config import PretrainConfig, to_dict
from data2vec.heads.finetuned import HeadConfig


def import_v2_classifier(ckpt: dict, model_cfg: dict, path: Path, state: dict, dropped: list) -> Imported:
    from data2vec.checkpoints.fairseq import detect_modality, rebuild_config

    inner = model_cfg.get("pretrained_model_args")
    inner = inner.get("model") if isinstance(inner, dict) else None
    if not isinstance(inner, dict):
        raise CheckpointReadError(f"{path}: cfg.model.pretrained_model_args.model is missing; the backbone's sizes "
                                  "cannot be known")
    inner_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    kind = detect_modality(inner, inner_state, path)
    cfg = rebuild_config(inner, kind, inner_state, path)
    drop_matching(state, r"model\.(_ema|modality_encoders\.\w+\.(decoder|encoder_mask|alibi_bias)(\..*)?)",
          "pretraining module / legacy buffer (removed by fairseq's remove_pretraining_modules)", dropped, "model.")
    rules = tuple(("model." + r[0], *r[1:]) for r in fairseq_d2v2_student_map(kind).rules
                  if not r[1].startswith(("decoder.", "encoder.norm")))
    name = model_cfg.get("_name")
    if name == "data2vec_text_classification":
        heads = sorted({k.split(".")[1] for k in state if k.startswith("classification_heads.")})
        if len(heads) != 1:
            raise CheckpointReadError(f"{path}: {len(heads)} classification heads {heads}; ours holds exactly one")
        key = f"classification_heads.{heads[0]}.out_proj.weight"
        if key not in state:
            raise KeyMapError(f"{path} [model]: missing key {key!r}")
        head = HeadConfig("sequence_classification", int(state[key].shape[0]))
        km = KeyMap(rules) + weight_bias(f"classification_heads.{heads[0]}.dense", "head.dense") + weight_bias(
            f"classification_heads.{heads[0]}.out_proj", "head.out_proj")
    else:
        if "head.weight" not in state:
            raise KeyMapError(f"{path} [model]: missing key 'head.weight'")
        head = HeadConfig("image_classification", int(state["head.weight"].shape[0]), final_norm=False)
        km = KeyMap(rules) + weight_bias("fc_norm", "head.fc_norm") + weight_bias("head", "head.head")
    expected, _ = model_keys(cfg, head)
    student = map_state(state, km, expected, f"{path} [model]")
    return Imported(cfg, student, None, head, f"fairseq {name}", dropped)


# --------------------------------------------------------------------------- export
def d2v2_model_cfg(cfg: PretrainConfig) -> dict[str, Any]:
    """The `cfg.model` a fairseq `data2vec_multi` file would store for `cfg` (inverse of the
    import tables in `fairseq.py`)."""
    kind, ours = input_kind(cfg), to_dict(cfg)["model"]
    scope = cfg.model.teacher.scope
    mod: dict[str, Any] = {"type": FAIRSEQ_MODALITY[kind], "decoder": {}, "ema_local_encoder": scope == "all",
                           "use_alibi_encoder": kind == "audio"}
    model: dict[str, Any] = {"_name": "data2vec_multi", "supported_modality": FAIRSEQ_MODALITY[kind],
                             "ema_encoder_only": scope == "blocks", "modalities": {kind: mod}}
    for dst, table in ((model, MODEL_FIELDS), (mod, MODALITY_FIELDS[kind])):
        for our_path, their_path in table:
            value: Any = ours
            for part in our_path.split("."):
                value = value[part]
            *parents, last = their_path.split(".")
            target = dst
            for part in parents:
                target = target.setdefault(part, {})
            target[last] = value
    if kind == "audio":
        inp = cfg.model.input
        mod["feature_encoder_spec"] = " + ".join(f"[({inp.conv_channels}, {k}, {s})]"
                                                 for k, s in zip(inp.conv_kernels, inp.conv_strides))
    return model


def export_v2(cfg: PretrainConfig, student: dict[str, Tensor], teacher: Optional[dict[str, Tensor]],
              where: str) -> dict[str, Any]:
    """The fairseq `data2vec_multi` checkpoint dict of a 2.0 pretraining model."""
    kind = input_kind(cfg)
    state = export_map(student, fairseq_d2v2_student_map(kind), where)
    if teacher is not None:
        km = fairseq_d2v2_teacher_map(kind, cfg.model.teacher.scope == "blocks")
        state["_ema"] = export_map(teacher, km, where + " teacher")
    return {"cfg": {"model": d2v2_model_cfg(cfg), "task": {"_name": kind}}, "model": state}


def export_v2_finetuned(cfg: PretrainConfig, student: dict[str, Tensor], head: HeadConfig, where: str) -> dict[str, Any]:
    """The fairseq wrapper dict of a fine-tuned 2.0 model: `wav2vec_ctc` (audio CTC),
    `mae_image_classification` (image) or `data2vec_text_classification` (text)."""
    kind = input_kind(cfg)
    rules = tuple(r for r in fairseq_d2v2_student_map(kind).rules if not r[1].startswith(("decoder.", "encoder.norm")))
    inner = {"model": d2v2_model_cfg(cfg), "task": {"_name": kind}}
    if head.kind == "ctc" and kind == "audio":
        km = KeyMap(tuple((W2V + r[0], *r[1:]) for r in rules)) + weight_bias("w2v_encoder.proj", "head.proj")
        model_cfg = {"_name": "wav2vec_ctc", "w2v_path": None, "w2v_args": inner}
    elif head.kind == "image_classification" and kind == "image" and not head.final_norm:
        km = KeyMap(tuple(("model." + r[0], *r[1:]) for r in rules)) + weight_bias("fc_norm", "head.fc_norm") + weight_bias(
            "head", "head.head")
        model_cfg = {"_name": "mae_image_classification", "pretrained_model_args": inner}
    elif head.kind == "sequence_classification" and kind == "text":
        name = "classification_heads.sentence_classification_head"
        km = KeyMap(tuple(("model." + r[0], *r[1:]) for r in rules)) + weight_bias(f"{name}.dense", "head.dense") + weight_bias(
            f"{name}.out_proj", "head.out_proj")
        model_cfg = {"_name": "data2vec_text_classification", "pretrained_model_args": inner}
    else:
        raise ValueError(f"{where}: no fairseq layout for a data2vec 2.0 {kind} model with a {head.kind} head "
                         "(supported: audio ctc, image image_classification, text sequence_classification)")
    return {"cfg": {"model": model_cfg, "task": {"_name": kind}}, "model": export_map(student, km, where)}
