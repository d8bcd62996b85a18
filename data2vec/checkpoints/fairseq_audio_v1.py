"""data2vec 1.0 speech checkpoints (fairseq `data2vec_audio`, with the `_ema` teacher) and the
fairseq `wav2vec_ctc` fine-tuned wrapper (over a 1.0 or 2.0 backbone), in and out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from data2vec.checkpoints.fairseq import copy_setting, parse_conv_spec
from data2vec.checkpoints.fairseq_common import (
    W2V, as_int, build_config, check_unsupported, drop_matching, export_map, model_keys, require_head, v1_layers,
)
from data2vec.checkpoints.imported import Imported
from data2vec.checkpoints.keymaps import (
    FAIRSEQ_QKV, KeyMap, KeyMapError, fairseq_d2v2_student_map, fuse_qkv, map_state, pairs, split_qkv, weight_bias,
)
from data2vec.checkpoints.unpickle import CheckpointReadError, load_checkpoint, resolve_interpolations
from data2vec.config import ConfigError, PretrainConfig, to_dict
from data2vec.heads.finetuned import HeadConfig
from data2vec.presets import get_preset

# (our ModelConfig path, fairseq `data2vec_audio` cfg.model field).
AUDIO_FIELDS = (
    ("encoder.dim", "encoder_embed_dim"), ("encoder.depth", "encoder_layers"),
    ("encoder.num_heads", "encoder_attention_heads"), ("encoder.dropout", "dropout"),
    ("encoder.attn_dropout", "attention_dropout"), ("encoder.activation_dropout", "activation_dropout"),
    ("encoder.layer_drop", "encoder_layerdrop"),
    ("input.conv_pos_width", "conv_pos"), ("input.conv_pos_groups", "conv_pos_groups"),
    ("input.conv_pos_depth", "pos_conv_depth"), ("input.mask_prob", "mask_prob"), ("input.mask_length", "mask_length"),
    ("targets.top_k", "average_top_k_layers"), ("targets.instance_norm_layers", "instance_norm_target_layer"),
    ("targets.layer_norm_layers", "layer_norm_target_layer"), ("targets.layer_norm_final", "layer_norm_targets"),
    ("targets.instance_norm_final", "instance_norm_targets"),
    ("loss.beta", "loss_beta"), ("loss.scale", "loss_scale"),
    ("teacher.decay", "ema_decay"), ("teacher.end_decay", "ema_end_decay"),
    ("teacher.anneal_steps", "ema_anneal_end_step"),
    ("min_target_std", "min_target_var"), ("min_pred_std", "min_pred_var"),  # stds despite the names
)
AUDIO_UNSUPPORTED = (
    ("layer_norm_first", lambda v: v is False), ("extractor_mode", lambda v: v == "layer_norm"),
    ("conv_bias", lambda v: v is False), ("layer_type", lambda v: v == "transformer"),
    ("activation_fn", lambda v: v == "gelu"), ("ema_transformer_only", lambda v: v is True),
    ("batch_norm_target_layer", lambda v: v is False), ("group_norm_target_layer", lambda v: v is False),
    # depth 1 is wav2vec 2.0's single weight-normed conv, whose keys differ (weight_g / weight_v).
    ("pos_conv_depth", lambda v: isinstance(v, int) and v > 1),
)
POS_CONV_COPIED = ("modality.relative_positional_encoder",)


def audio_v1_config(model_cfg: dict, where: str) -> PretrainConfig:
    """data2vec_audio_base with every stored `data2vec_audio` field we understand copied in."""
    check_unsupported(model_cfg, AUDIO_UNSUPPORTED, where)
    data = to_dict(get_preset("data2vec_audio_base"))
    model = data["model"]
    for ours, theirs in AUDIO_FIELDS:
        copy_setting(model_cfg, theirs, model, ours)
    dim = model["encoder"]["dim"]
    if "encoder_ffn_embed_dim" in model_cfg:
        model["encoder"]["mlp_ratio"] = as_int(model_cfg["encoder_ffn_embed_dim"], "encoder_ffn_embed_dim", where) / dim
    if "conv_feature_layers" in model_cfg:
        try:
            layers = parse_conv_spec(model_cfg["conv_feature_layers"])
        except (SyntaxError, ValueError) as e:
            raise ConfigError(f"{where}.conv_feature_layers={model_cfg['conv_feature_layers']!r}: {e}") from None
        channels = {c for c, _, _ in layers}
        if len(channels) != 1:
            raise ConfigError(f"{where}.conv_feature_layers has varying channels {sorted(channels)}; ours needs one")
        model["input"].update(conv_channels=channels.pop(), conv_kernels=[k for _, k, _ in layers],
                              conv_strides=[s for _, _, s in layers])
    if "ema_layers_only" in model_cfg:  # true: positional convs copied (skip_keys), false: averaged (#4323)
        model["teacher"]["copied"] = list(POS_CONV_COPIED) if model_cfg["ema_layers_only"] else []
    return build_config(data, where)


def audio_v1_model_cfg(cfg: PretrainConfig) -> dict[str, Any]:
    """The `cfg.model` a fairseq `data2vec_audio` file would store for `cfg`."""
    m = to_dict(cfg)["model"]
    out: dict[str, Any] = {"_name": "data2vec_audio"}
    for ours, theirs in AUDIO_FIELDS:
        value: Any = m
        for part in ours.split("."):
            value = value[part]
        out[theirs] = value
    inp = cfg.model.input
    out.update(
        encoder_ffn_embed_dim=int(round(cfg.model.encoder.dim * cfg.model.encoder.mlp_ratio)),
        conv_feature_layers=" + ".join(f"[({inp.conv_channels}, {k}, {s})]"
                                       for k, s in zip(inp.conv_kernels, inp.conv_strides)),
        layer_norm_first=False, extractor_mode="layer_norm", conv_bias=False, layer_type="transformer",
        activation_fn="gelu", ema_transformer_only=True,
        ema_layers_only=tuple(cfg.model.teacher.copied) == POS_CONV_COPIED,
    )
    return out


def audio_v1_map(cfg: PretrainConfig, prefix: str = "", pretraining: bool = True) -> KeyMap:
    """fairseq `data2vec_audio` keys (under `prefix`) -> our Data2Vec1Model / EncoderWithHead keys."""
    p, ours = prefix, "modality.local_encoder"
    km = (pairs((f"{p}feature_extractor.conv_layers.{{}}.0.weight", f"{ours}.conv_layers.{{}}.0.weight"))
          + weight_bias(f"{p}feature_extractor.conv_layers.{{}}.2.1", f"{ours}.conv_layers.{{}}.2.1")
          + weight_bias(f"{p}layer_norm", f"{ours}.project_features.1")
          + weight_bias(f"{p}post_extract_proj", f"{ours}.project_features.2")
          + _audio_context(cfg, f"{p}encoder."))
    if pretraining:
        km = km + pairs((f"{p}mask_emb", "mask_emb")) + weight_bias(f"{p}final_proj", "head")
    return km


def _audio_context(cfg: PretrainConfig, p: str) -> KeyMap:
    """`encoder.*` of wav2vec 2.0's TransformerEncoder (also the `_ema` keys, with p="")."""
    # Our positional encoder is Sequential(TransposeLast, conv block 1..depth, TransposeLast).
    km = KeyMap(())
    for i in range(cfg.model.input.conv_pos_depth):
        km = km + weight_bias(f"{p}pos_conv.{i}.0", f"modality.relative_positional_encoder.{i + 1}.0")
    return km + weight_bias(f"{p}layer_norm", "modality.context_encoder.input_norm") + v1_layers(f"{p}layers.")


def import_audio_v1(ckpt: dict, model_cfg: dict, path: Path, state: dict, dropped: list) -> Imported:
    cfg = audio_v1_config(model_cfg, f"{path}: cfg.model")
    ema = state.pop("_ema", None)
    # The released pre-trained file stores the regression head as a Sequential (`final_proj.0.*`).
    for key in [k for k in state if k.startswith("final_proj.0.")]:
        state["final_proj." + key[len("final_proj.0."):]] = state.pop(key)
    expected, model = model_keys(cfg, None)
    student = map_state(fuse_qkv(state, FAIRSEQ_QKV, f"{path} [model]"), audio_v1_map(cfg), expected, f"{path} [model]")
    teacher = None
    if ema is not None:
        texp = model.make_teacher().module.state_dict()
        teacher = map_state(fuse_qkv(dict(ema), FAIRSEQ_QKV, f"{path} [model._ema]"), _audio_context(cfg, ""), texp,
                            f"{path} [model._ema]")
    return Imported(cfg, student, teacher, None, "fairseq data2vec_audio", dropped)


# --------------------------------------------------------------------------- fine-tuned speech (CTC)
def _pretrain_args(model_cfg: dict, path: Path) -> dict:
    """The pretraining config of a `wav2vec_ctc` file: `w2v_args`, else the file `w2v_path`."""
    args = model_cfg.get("w2v_args")
    if isinstance(args, dict) and isinstance(args.get("model"), dict):
        resolve_interpolations(args, args)
        return args
    w2v_path = model_cfg.get("w2v_path")
    if isinstance(w2v_path, str) and Path(w2v_path).is_file():
        inner = load_checkpoint(w2v_path)
        if isinstance(inner.get("cfg"), dict) and isinstance(inner["cfg"].get("model"), dict):
            resolve_interpolations(inner["cfg"], inner["cfg"])
            return inner["cfg"]
    raise CheckpointReadError(
        f"{path}: cfg.model.w2v_args holds no pretraining config and w2v_path={w2v_path!r} is not a readable "
        "file; the backbone's sizes cannot be known")


def import_ctc(ckpt: dict, model_cfg: dict, path: Path, state: dict, dropped: list) -> Imported:
    args = _pretrain_args(model_cfg, path)
    inner = args["model"]
    name = inner.get("_name")
    if name == "data2vec_audio":
        cfg = audio_v1_config(inner, f"{path}: cfg.model.w2v_args.model")
        km = audio_v1_map(cfg, W2V, pretraining=False)
    elif name == "data2vec_multi":
        from data2vec.checkpoints.fairseq import detect_modality, rebuild_config

        inner_state = {k[len(W2V):]: v for k, v in state.items() if k.startswith(W2V)}
        kind = detect_modality(inner, inner_state, path)
        cfg = rebuild_config(inner, kind, inner_state, path)
        rules = tuple((W2V + r[0], *r[1:]) for r in fairseq_d2v2_student_map(kind).rules
                      if not r[1].startswith("decoder."))
        km = KeyMap(rules)
        drop_matching(state, re.escape(W2V) + r"modality_encoders\.\w+\.(decoder|encoder_mask|alibi_bias)(\..*)?",
              "pretraining decoder / legacy buffer (not part of the fine-tuned model)", dropped, "model.")
    else:
        raise CheckpointReadError(f"{path}: wav2vec_ctc over a {name!r} model; only data2vec_audio (1.0) and "
                                  "data2vec_multi (2.0) backbones are supported")
    drop_matching(state, re.escape(W2V) + r"mask_emb", "mask embedding for fine-tuning-time masking (training only)",
          dropped, "model.")
    drop_matching(state, re.escape(W2V) + r"(final_proj|_ema)(\..*)?", "pretraining module (not used by CTC)",
          dropped, "model.")
    proj = state.get("w2v_encoder.proj.weight")
    if proj is None:
        raise KeyMapError(f"{path} [model]: missing key 'w2v_encoder.proj.weight'")
    head = HeadConfig("ctc", int(proj.shape[0]))
    km = km + weight_bias("w2v_encoder.proj", "head.proj")
    expected, _ = model_keys(cfg, head)
    student = map_state(fuse_qkv(state, FAIRSEQ_QKV, f"{path} [model]"), km, expected, f"{path} [model]")
    return Imported(cfg, student, None, head, f"fairseq wav2vec_ctc ({name})", dropped)


# --------------------------------------------------------------------------- export
def export_audio_v1(cfg: PretrainConfig, student: dict[str, Tensor], teacher: Optional[dict[str, Tensor]],
                    head: Optional[HeadConfig], where: str) -> dict[str, Any]:
    """The fairseq checkpoint dict of a 1.0 speech model: `data2vec_audio`, or `wav2vec_ctc` with a head."""
    if head is None:
        state = split_qkv(export_map(student, audio_v1_map(cfg), where), FAIRSEQ_QKV)
        if teacher is not None:
            state["_ema"] = split_qkv(export_map(teacher, _audio_context(cfg, ""), where + " teacher"), FAIRSEQ_QKV)
        return {"cfg": {"model": audio_v1_model_cfg(cfg), "task": {"_name": "audio_pretraining"}}, "model": state}
    require_head(head, "ctc", cfg)
    km = audio_v1_map(cfg, W2V, pretraining=False) + weight_bias("w2v_encoder.proj", "head.proj")
    state = split_qkv(export_map(student, km, where), FAIRSEQ_QKV)
    # fairseq's wrapper keeps the backbone's mask embedding (used only for fine-tuning-time
    # masking); ours has none, so a zero one lets fairseq's strict load accept the file.
    state[W2V + "mask_emb"] = torch.zeros(cfg.model.encoder.dim)
    return {"cfg": {"model": {"_name": "wav2vec_ctc", "w2v_path": None,
                              "w2v_args": {"model": audio_v1_model_cfg(cfg),
                                           "task": {"_name": "audio_pretraining"}}},
                    "task": {"_name": "audio_finetuning"}}, "model": state}
