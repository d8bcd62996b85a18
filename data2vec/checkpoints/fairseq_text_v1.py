"""data2vec 1.0 text checkpoints (fairseq `data2vec_text` and RoBERTa-style files, with the
`encoder._ema` teacher) and RoBERTa `classification_heads.<name>` classifiers, in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from data2vec.checkpoints.fairseq import copy_setting
from data2vec.checkpoints.fairseq_common import (
    VERSION_REASON, as_int, build_config, check_unsupported, check_version, drop_matching, export_map, model_keys,
    require_head, v1_layers,
)
from data2vec.checkpoints.imported import Imported
from data2vec.checkpoints.keymaps import (
    FAIRSEQ_QKV, KeyMap, KeyMapError, fuse_qkv, map_state, pairs, split_qkv, weight_bias,
)
from data2vec.checkpoints.unpickle import CheckpointReadError
from data2vec.config import ConfigError, PretrainConfig, to_dict
from data2vec.heads.finetuned import HeadConfig
from data2vec.presets import get_preset

# (our path, field of cfg.model.transformer, flat RoBERTa-style field)
TEXT_TRANSFORMER_FIELDS = (
    ("encoder.dim", "encoder.embed_dim", "encoder_embed_dim"), ("encoder.depth", "encoder.layers", "encoder_layers"),
    ("encoder.num_heads", "encoder.attention_heads", "encoder_attention_heads"),
    ("encoder.layer_drop", "encoder.layerdrop", "encoder_layerdrop"),
    ("encoder.dropout", "dropout", "dropout"), ("encoder.attn_dropout", "attention_dropout", "attention_dropout"),
    ("encoder.activation_dropout", "activation_dropout", "activation_dropout"),
    ("input.embed_dropout", "dropout", "dropout"),
)
TEXT_FIELDS = (
    ("decoder.projection_layers", "head_layers"), ("targets.top_k", "average_top_k_layers"),
    ("targets.layer_norm_layers", "layer_norm_target_layer"),
    ("targets.instance_norm_layers", "instance_norm_target_layer"),
    ("targets.layer_norm_final", "layer_norm_targets"), ("targets.instance_norm_final", "instance_norm_targets"),
    ("loss.beta", "loss_beta"), ("loss.scale", "loss_scale"),
    ("teacher.decay", "ema_decay"), ("teacher.end_decay", "ema_end_decay"),
    ("teacher.anneal_steps", "ema_anneal_end_step"),
)
TEXT_UNSUPPORTED = (
    ("encoder.normalize_before", lambda v: v is False), ("encoder.learned_pos", lambda v: v is True),
    ("layernorm_embedding", lambda v: v is True), ("no_scale_embedding", lambda v: v is True),
    ("activation_fn", lambda v: v == "gelu"), ("encoder_normalize_before", lambda v: v is False),
    ("batch_norm_target_layer", lambda v: v is False),
)
EMBEDDINGS_COPIED = ("modality.local_encoder",)
SENTENCE = "encoder.sentence_encoder."


def _flat(section: dict) -> dict:
    """{dotted.key: value} view of a nested dict (one level of `encoder.`)."""
    out = {}
    for k, v in section.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items() if not isinstance(vv, dict)})
        else:
            out[k] = v
    return out


def text_v1_config(model_cfg: dict, state: dict, where: str, prefix: str = SENTENCE) -> PretrainConfig:
    """data2vec_text_base with the stored fields copied in (nested `transformer.*` of
    `data2vec_text`, or the flat `encoder_*` fields of a RoBERTa-style config)."""
    tr = model_cfg.get("transformer") if isinstance(model_cfg.get("transformer"), dict) else {}
    check_unsupported(_flat(tr), TEXT_UNSUPPORTED, f"{where}.transformer")
    check_unsupported(model_cfg, TEXT_UNSUPPORTED, where)
    data = to_dict(get_preset("data2vec_text_base"))
    model = data["model"]
    for ours, nested, flat in TEXT_TRANSFORMER_FIELDS:
        copy_setting(tr, nested, model, ours)
        copy_setting(model_cfg, flat, model, ours)
    for ours, theirs in TEXT_FIELDS:
        copy_setting(model_cfg, theirs, model, ours)
    ffn = (tr.get("encoder") or {}).get("ffn_embed_dim", model_cfg.get("encoder_ffn_embed_dim"))
    if ffn is not None:
        model["encoder"]["mlp_ratio"] = as_int(ffn, "ffn_embed_dim", where) / model["encoder"]["dim"]
    if "ema_transformer_layers_only" in model_cfg:  # true: embeddings copied (skip_keys), false: averaged
        model["teacher"]["copied"] = list(EMBEDDINGS_COPIED) if model_cfg["ema_transformer_layers_only"] else []
    # Vocabulary and positions come from the task's dictionary: read them off the embeddings.
    for name in ("embed_tokens.weight", "embed_positions.weight"):
        if prefix + name not in state:
            raise KeyMapError(f"{where}: missing key {prefix + name!r}")
    model["input"]["vocab_size"] = int(state[prefix + "embed_tokens.weight"].shape[0])
    rows = int(state[prefix + "embed_positions.weight"].shape[0])
    model["input"]["max_positions"] = rows - model["input"]["pad_id"] - 1  # fairseq: max + padding_idx + 1
    return build_config(data, where)


def text_v1_model_cfg(cfg: PretrainConfig) -> dict[str, Any]:
    """The `cfg.model` a fairseq `data2vec_text` file would store for `cfg`."""
    m, enc = to_dict(cfg)["model"], cfg.model.encoder
    out: dict[str, Any] = {"_name": "data2vec_text", "max_positions": cfg.model.input.max_positions}
    for ours, theirs in TEXT_FIELDS:
        value: Any = m
        for part in ours.split("."):
            value = value[part]
        out[theirs] = value
    out["transformer"] = {
        "dropout": enc.dropout, "attention_dropout": enc.attn_dropout, "activation_dropout": enc.activation_dropout,
        "layernorm_embedding": True, "no_scale_embedding": True, "activation_fn": "gelu",
        "max_source_positions": cfg.model.input.max_positions,
        "encoder": {"embed_dim": enc.dim, "ffn_embed_dim": int(round(enc.dim * enc.mlp_ratio)), "layers": enc.depth,
                    "attention_heads": enc.num_heads, "layerdrop": enc.layer_drop, "normalize_before": False,
                    "learned_pos": True},
    }
    out["ema_transformer_layers_only"] = tuple(cfg.model.teacher.copied) == EMBEDDINGS_COPIED
    if cfg.model.input.embed_dropout != enc.dropout:
        raise ConfigError(f"model.input.embed_dropout={cfg.model.input.embed_dropout} differs from "
                          f"model.encoder.dropout={enc.dropout}; fairseq has one `dropout` for both")
    return out


def _text_embed(p: str) -> KeyMap:
    ours = "modality.local_encoder"
    return (pairs((f"{p}embed_tokens.weight", f"{ours}.embed_tokens.weight"),
                   (f"{p}embed_positions.weight", f"{ours}.embed_positions.weight"))
            + weight_bias(f"{p}layernorm_embedding", f"{ours}.layernorm_embedding") + v1_layers(f"{p}layers."))


def text_v1_map(cfg: PretrainConfig, pretraining: bool = True) -> KeyMap:
    km = _text_embed(SENTENCE)
    if pretraining:
        if cfg.model.decoder.projection_layers == 1:
            km = km + weight_bias("encoder.regression_head.0", "head")
        else:
            km = km + weight_bias("encoder.regression_head.{}", "head.{}")
    return km


def fix_legacy_text(state: dict[str, Any]) -> dict[str, Any]:
    """fairseq Data2VecTextModel.upgrade_state_dict_named: `decoder.` -> `encoder.`,
    `.emb_layer_norm.` -> `.layernorm_embedding.`, `.lm_head.` -> `.regression_head.`."""
    out = {}
    for key, value in state.items():
        if key.startswith("decoder."):
            key = "encoder." + key[len("decoder."):]
        key = ("." + key).replace(".emb_layer_norm.", ".layernorm_embedding.")[1:]
        if key.startswith("encoder.lm_head."):
            key = "encoder.regression_head." + key[len("encoder.lm_head."):]
        out[key] = value
    return out


def _import_text_teacher(ema: dict, student_state: dict, model: Any, path: Path, dropped: list) -> dict:
    ema = fix_legacy_text(dict(ema))
    drop_matching(ema, "version", VERSION_REASON, dropped, "model.encoder._ema.", check_version)
    for name in ("embed_tokens.weight", "embed_positions.weight", "layernorm_embedding.weight",
                 "layernorm_embedding.bias"):
        if name not in ema:  # fairseq copies the embeddings from the student (skip_keys)
            ema[name] = student_state[SENTENCE + name]
    texp = model.make_teacher().module.state_dict()
    return map_state(fuse_qkv(ema, FAIRSEQ_QKV, f"{path} [model.encoder._ema]"), _text_embed(""), texp,
                     f"{path} [model.encoder._ema]")


def import_text_v1(ckpt: dict, model_cfg: dict, path: Path, state: dict, dropped: list) -> Imported:
    state = fix_legacy_text(state)
    heads = sorted({k.split(".")[1] for k in state if k.startswith("classification_heads.")})
    if heads:
        return _import_text_classifier(model_cfg, path, state, dropped, heads)
    cfg = text_v1_config(model_cfg, state, f"{path}: cfg.model")
    ema = state.pop("encoder._ema", None)
    drop_matching(state, r"encoder\.sentence_encoder\.version", VERSION_REASON, dropped, "model.", check_version)
    expected, model = model_keys(cfg, None)
    student = map_state(fuse_qkv(state, FAIRSEQ_QKV, f"{path} [model]"), text_v1_map(cfg), expected, f"{path} [model]")
    teacher = _import_text_teacher(ema, state, model, path, dropped) if ema is not None else None
    return Imported(cfg, student, teacher, None, "fairseq data2vec_text", dropped)


def _import_text_classifier(model_cfg: dict, path: Path, state: dict, dropped: list, heads: list) -> Imported:
    if len(heads) != 1:
        raise CheckpointReadError(f"{path}: {len(heads)} classification heads {heads}; ours holds one")
    name = heads[0]
    cfg = text_v1_config(model_cfg, state, f"{path}: cfg.model")
    drop_matching(state, r"encoder\.sentence_encoder\.version", VERSION_REASON, dropped, "model.", check_version)
    drop_matching(state, r"encoder\._ema", "EMA teacher of pretraining (not part of the fine-tuned model)", dropped, "model.")
    drop_matching(state, r"encoder\.regression_head\..*", "pretraining regression head (unused by the classifier)",
          dropped, "model.")
    out_proj = state.get(f"classification_heads.{name}.out_proj.weight")
    if out_proj is None:
        raise KeyMapError(f"{path} [model]: missing key 'classification_heads.{name}.out_proj.weight'")
    head = HeadConfig("sequence_classification", int(out_proj.shape[0]))
    km = text_v1_map(cfg, pretraining=False) + weight_bias(f"classification_heads.{name}.dense", "head.dense") + weight_bias(
        f"classification_heads.{name}.out_proj", "head.out_proj")
    expected, _ = model_keys(cfg, head)
    student = map_state(fuse_qkv(state, FAIRSEQ_QKV, f"{path} [model]"), km, expected, f"{path} [model]")
    return Imported(cfg, student, None, head, f"fairseq {model_cfg.get('_name')} + classification_heads.{name}", dropped)


# --------------------------------------------------------------------------- export
def export_text_v1(cfg: PretrainConfig, student: dict[str, Tensor], teacher: Optional[dict[str, Tensor]],
                   head: Optional[HeadConfig], where: str) -> dict[str, Any]:
    """The fairseq checkpoint dict of a 1.0 text model: `data2vec_text`, with a classification head if set."""
    version_buffer = torch.tensor([3.0])  # fairseq TransformerEncoder's format version
    if head is None:
        state = split_qkv(export_map(student, text_v1_map(cfg), where), FAIRSEQ_QKV)
        if teacher is not None:
            ema = split_qkv(export_map(teacher, _text_embed(""), where + " teacher"), FAIRSEQ_QKV)
            ema["version"] = version_buffer.clone()
            state["encoder._ema"] = ema
    else:
        require_head(head, "sequence_classification", cfg)
        name = "classification_heads.sentence_classification_head"
        km = text_v1_map(cfg, pretraining=False) + weight_bias(f"{name}.dense", "head.dense") + weight_bias(
            f"{name}.out_proj", "head.out_proj")
        state = split_qkv(export_map(student, km, where), FAIRSEQ_QKV)
    state[SENTENCE + "version"] = version_buffer
    return {"cfg": {"model": text_v1_model_cfg(cfg), "task": {"_name": "masked_lm"}}, "model": state}
