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
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from data2vec.checkpoints.fairseq import MODALITY_FIELDS, MODEL_FIELDS, _copy, parse_conv_spec
from data2vec.checkpoints.keymaps import (
    FAIRSEQ_MODALITY, KeyMap, KeyMapError, Transform, _wb, fairseq_d2v2_student_map, fairseq_d2v2_teacher_map,
    map_state,
)
from data2vec.checkpoints.unpickle import CheckpointReadError, load_checkpoint, resolve_interpolations
from data2vec.config import ConfigError, PretrainConfig, from_dict, to_dict
from data2vec.heads.finetuned import HeadConfig, build_finetuned
from data2vec.nn.relpos import relative_position_index
from data2vec.presets import get_preset


@dataclass
class Imported:
    """What a checkpoint file holds, in our layout.

    `student` loads into `build_model(cfg.model)` (pretraining) or
    `build_finetuned(cfg.model, head)` (fine-tuned, `head` set); `teacher` into
    `model.make_teacher().module`. `dropped` lists every file key left out, with the reason.
    """

    cfg: PretrainConfig
    student: dict[str, Tensor]
    teacher: Optional[dict[str, Tensor]] = None
    head: Optional[HeadConfig] = None
    source: str = ""  # e.g. "fairseq data2vec_audio", "BEiT repository .pth"
    dropped: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- shared helpers
def _drop(state: dict[str, Any], pattern: str, reason: str, dropped: list, where: str,
          check: Optional[Callable[[str, Any], None]] = None) -> None:
    """Remove the keys fully matching `pattern`, after `check(key, value)`, recording why."""
    rx = re.compile(pattern)
    for key in [k for k in state if rx.fullmatch(k)]:
        if check is not None:
            check(key, state[key])
        state.pop(key)
        dropped.append((f"{where}{key}", reason))


def _check_version(key: str, value: Any) -> None:
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise KeyMapError(f"key {key!r}: expected fairseq's one-element format-version buffer, got "
                          f"{getattr(value, 'shape', type(value).__name__)}")


VERSION_REASON = "fairseq TransformerEncoder's state-format version buffer (no weights)"

_QKV = re.compile(r"(.*)\.q_proj\.(weight|bias)")


def fuse_qkv(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """fairseq's separate `X.q_proj/k_proj/v_proj.*` -> one `X.qkv.*` (concatenated q, k, v
    along the output axis, the order our fused `attn.qkv` splits them)."""
    out = dict(state)
    for key in list(state):
        m = _QKV.fullmatch(key)
        if not m:
            continue
        base, kind = m.groups()
        parts = []
        for p in "qkv":
            k = f"{base}.{p}_proj.{kind}"
            if k not in out:
                raise KeyMapError(f"{where}: missing key {k!r} (the file has {key!r})")
            parts.append(out.pop(k))
        out[f"{base}.qkv.{kind}"] = torch.cat(parts, 0)
    return out


def split_qkv(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of `fuse_qkv` for keys `X.self_attn.qkv.*`."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"(.*\.self_attn)\.qkv\.(weight|bias)", key)
        if m:
            for p, chunk in zip("qkv", value.chunk(3, 0)):
                out[f"{m.group(1)}.{p}_proj.{m.group(2)}"] = chunk.clone()
        else:
            out[key] = value
    return out


def _pairs(*pairs: tuple) -> KeyMap:
    return KeyMap(tuple(pairs))


# fairseq post-LN Transformer layer (wav2vec 2.0 TransformerSentenceEncoderLayer and the
# RoBERTa TransformerEncoderLayer share these names) -> our post-LN Block.
_V1_LAYER = (("self_attn.qkv", "attn.qkv"), ("self_attn.out_proj", "attn.proj"), ("self_attn_layer_norm", "norm1"),
             ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2"), ("final_layer_norm", "norm2"))


def _v1_layers(src: str) -> KeyMap:
    return KeyMap(tuple((f"{src}{{}}.{a}.{wb}", f"encoder.blocks.{{}}.{b}.{wb}")
                        for a, b in _V1_LAYER for wb in ("weight", "bias")))


def _as_int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{where}: {name}={value!r} is not an integer")
    return int(value)


def _check_unsupported(section: dict, table: tuple, where: str) -> None:
    for name, ok in table:
        if name in section and not ok(section[name]):
            raise ConfigError(f"{where}.{name}={section[name]!r} is not supported by our model")


def _build_cfg(data: dict, where: str) -> PretrainConfig:
    try:
        return from_dict(PretrainConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{where}: stored config does not fit our model: {e}") from e


def _model_keys(cfg: PretrainConfig, head: Optional[HeadConfig]) -> tuple[dict[str, Tensor], Any]:
    from data2vec.train.pretrain import build_model

    model = build_finetuned(cfg.model, head) if head is not None else build_model(cfg.model)
    return model.state_dict(), model


# --------------------------------------------------------------------------- 1.0 speech
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
    _check_unsupported(model_cfg, AUDIO_UNSUPPORTED, where)
    data = to_dict(get_preset("data2vec_audio_base"))
    model = data["model"]
    for ours, theirs in AUDIO_FIELDS:
        _copy(model_cfg, theirs, model, ours)
    dim = model["encoder"]["dim"]
    if "encoder_ffn_embed_dim" in model_cfg:
        model["encoder"]["mlp_ratio"] = _as_int(model_cfg["encoder_ffn_embed_dim"], "encoder_ffn_embed_dim", where) / dim
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
    return _build_cfg(data, where)


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
    km = (_pairs((f"{p}feature_extractor.conv_layers.{{}}.0.weight", f"{ours}.conv_layers.{{}}.0.weight"))
          + _wb(f"{p}feature_extractor.conv_layers.{{}}.2.1", f"{ours}.conv_layers.{{}}.2.1")
          + _wb(f"{p}layer_norm", f"{ours}.project_features.1")
          + _wb(f"{p}post_extract_proj", f"{ours}.project_features.2")
          + _audio_context(cfg, f"{p}encoder."))
    if pretraining:
        km = km + _pairs((f"{p}mask_emb", "mask_emb")) + _wb(f"{p}final_proj", "head")
    return km


def _audio_context(cfg: PretrainConfig, p: str) -> KeyMap:
    """`encoder.*` of wav2vec 2.0's TransformerEncoder (also the `_ema` keys, with p="")."""
    # Our positional encoder is Sequential(TransposeLast, conv block 1..depth, TransposeLast).
    km = KeyMap(())
    for i in range(cfg.model.input.conv_pos_depth):
        km = km + _wb(f"{p}pos_conv.{i}.0", f"modality.relative_positional_encoder.{i + 1}.0")
    return km + _wb(f"{p}layer_norm", "modality.context_encoder.input_norm") + _v1_layers(f"{p}layers.")


def _import_audio(ckpt: dict, model_cfg: dict, path: Path, state: dict, dropped: list) -> Imported:
    cfg = audio_v1_config(model_cfg, f"{path}: cfg.model")
    ema = state.pop("_ema", None)
    # The released pre-trained file stores the regression head as a Sequential (`final_proj.0.*`).
    for key in [k for k in state if k.startswith("final_proj.0.")]:
        state["final_proj." + key[len("final_proj.0."):]] = state.pop(key)
    expected, model = _model_keys(cfg, None)
    student = map_state(fuse_qkv(state, f"{path} [model]"), audio_v1_map(cfg), expected, f"{path} [model]")
    teacher = None
    if ema is not None:
        texp = model.make_teacher().module.state_dict()
        teacher = map_state(fuse_qkv(dict(ema), f"{path} [model._ema]"), _audio_context(cfg, ""), texp,
                            f"{path} [model._ema]")
    return Imported(cfg, student, teacher, None, "fairseq data2vec_audio", dropped)


# --------------------------------------------------------------------------- 1.0 text
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
    _check_unsupported(_flat(tr), TEXT_UNSUPPORTED, f"{where}.transformer")
    _check_unsupported(model_cfg, TEXT_UNSUPPORTED, where)
    data = to_dict(get_preset("data2vec_text_base"))
    model = data["model"]
    for ours, nested, flat in TEXT_TRANSFORMER_FIELDS:
        _copy(tr, nested, model, ours)
        _copy(model_cfg, flat, model, ours)
    for ours, theirs in TEXT_FIELDS:
        _copy(model_cfg, theirs, model, ours)
    ffn = (tr.get("encoder") or {}).get("ffn_embed_dim", model_cfg.get("encoder_ffn_embed_dim"))
    if ffn is not None:
        model["encoder"]["mlp_ratio"] = _as_int(ffn, "ffn_embed_dim", where) / model["encoder"]["dim"]
    if "ema_transformer_layers_only" in model_cfg:  # true: embeddings copied (skip_keys), false: averaged
        model["teacher"]["copied"] = list(EMBEDDINGS_COPIED) if model_cfg["ema_transformer_layers_only"] else []
    # Vocabulary and positions come from the task's dictionary: read them off the embeddings.
    for name in ("embed_tokens.weight", "embed_positions.weight"):
        if prefix + name not in state:
            raise KeyMapError(f"{where}: missing key {prefix + name!r}")
    model["input"]["vocab_size"] = int(state[prefix + "embed_tokens.weight"].shape[0])
    rows = int(state[prefix + "embed_positions.weight"].shape[0])
    model["input"]["max_positions"] = rows - model["input"]["pad_id"] - 1  # fairseq: max + padding_idx + 1
    return _build_cfg(data, where)


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
    return (_pairs((f"{p}embed_tokens.weight", f"{ours}.embed_tokens.weight"),
                   (f"{p}embed_positions.weight", f"{ours}.embed_positions.weight"))
            + _wb(f"{p}layernorm_embedding", f"{ours}.layernorm_embedding") + _v1_layers(f"{p}layers."))


def text_v1_map(cfg: PretrainConfig, pretraining: bool = True) -> KeyMap:
    km = _text_embed(SENTENCE)
    if pretraining:
        if cfg.model.decoder.projection_layers == 1:
            km = km + _wb("encoder.regression_head.0", "head")
        else:
            km = km + _wb("encoder.regression_head.{}", "head.{}")
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
    _drop(ema, "version", VERSION_REASON, dropped, "model.encoder._ema.", _check_version)
    for name in ("embed_tokens.weight", "embed_positions.weight", "layernorm_embedding.weight",
                 "layernorm_embedding.bias"):
        if name not in ema:  # fairseq copies the embeddings from the student (skip_keys)
            ema[name] = student_state[SENTENCE + name]
    texp = model.make_teacher().module.state_dict()
    return map_state(fuse_qkv(ema, f"{path} [model.encoder._ema]"), _text_embed(""), texp,
                     f"{path} [model.encoder._ema]")


def _import_text(ckpt: dict, model_cfg: dict, path: Path, state: dict, dropped: list) -> Imported:
    state = fix_legacy_text(state)
    heads = sorted({k.split(".")[1] for k in state if k.startswith("classification_heads.")})
    if heads:
        return _import_text_classifier(model_cfg, path, state, dropped, heads)
    cfg = text_v1_config(model_cfg, state, f"{path}: cfg.model")
    ema = state.pop("encoder._ema", None)
    _drop(state, r"encoder\.sentence_encoder\.version", VERSION_REASON, dropped, "model.", _check_version)
    expected, model = _model_keys(cfg, None)
    student = map_state(fuse_qkv(state, f"{path} [model]"), text_v1_map(cfg), expected, f"{path} [model]")
    teacher = _import_text_teacher(ema, state, model, path, dropped) if ema is not None else None
    return Imported(cfg, student, teacher, None, "fairseq data2vec_text", dropped)


def _import_text_classifier(model_cfg: dict, path: Path, state: dict, dropped: list, heads: list) -> Imported:
    if len(heads) != 1:
        raise CheckpointReadError(f"{path}: {len(heads)} classification heads {heads}; ours holds one")
    name = heads[0]
    cfg = text_v1_config(model_cfg, state, f"{path}: cfg.model")
    _drop(state, r"encoder\.sentence_encoder\.version", VERSION_REASON, dropped, "model.", _check_version)
    _drop(state, r"encoder\._ema", "EMA teacher of pretraining (not part of the fine-tuned model)", dropped, "model.")
    _drop(state, r"encoder\.regression_head\..*", "pretraining regression head (unused by the classifier)",
          dropped, "model.")
    out_proj = state.get(f"classification_heads.{name}.out_proj.weight")
    if out_proj is None:
        raise KeyMapError(f"{path} [model]: missing key 'classification_heads.{name}.out_proj.weight'")
    head = HeadConfig("sequence_classification", int(out_proj.shape[0]))
    km = text_v1_map(cfg, pretraining=False) + _wb(f"classification_heads.{name}.dense", "head.dense") + _wb(
        f"classification_heads.{name}.out_proj", "head.out_proj")
    expected, _ = _model_keys(cfg, head)
    student = map_state(fuse_qkv(state, f"{path} [model]"), km, expected, f"{path} [model]")
    return Imported(cfg, student, None, head, f"fairseq {model_cfg.get('_name')} + classification_heads.{name}", dropped)


# --------------------------------------------------------------------------- fine-tuned speech (CTC)
W2V = "w2v_encoder.w2v_model."


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


def _import_ctc(ckpt: dict, model_cfg: dict, path: Path, state: dict, dropped: list) -> Imported:
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
        _drop(state, re.escape(W2V) + r"modality_encoders\.\w+\.(decoder|encoder_mask|alibi_bias)(\..*)?",
              "pretraining decoder / legacy buffer (not part of the fine-tuned model)", dropped, "model.")
    else:
        raise CheckpointReadError(f"{path}: wav2vec_ctc over a {name!r} model; only data2vec_audio (1.0) and "
                                  "data2vec_multi (2.0) backbones are supported")
    _drop(state, re.escape(W2V) + r"mask_emb", "mask embedding for fine-tuning-time masking (training only)",
          dropped, "model.")
    _drop(state, re.escape(W2V) + r"(final_proj|_ema)(\..*)?", "pretraining module (not used by CTC)",
          dropped, "model.")
    proj = state.get("w2v_encoder.proj.weight")
    if proj is None:
        raise KeyMapError(f"{path} [model]: missing key 'w2v_encoder.proj.weight'")
    head = HeadConfig("ctc", int(proj.shape[0]))
    km = km + _wb("w2v_encoder.proj", "head.proj")
    expected, _ = _model_keys(cfg, head)
    student = map_state(fuse_qkv(state, f"{path} [model]"), km, expected, f"{path} [model]")
    return Imported(cfg, student, None, head, f"fairseq wav2vec_ctc ({name})", dropped)


# --------------------------------------------------------------------------- BEiT (1.0 vision)
# Heads are not stored as a size; the relative-position tables have one column per head, and
# without a table the width decides (BEiT Base 768 -> 12 heads, Large 1024 -> 16).
HEADS_BY_DIM = {768: 12, 1024: 16}
_BEIT_BLOCK = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
               "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
               "mlp.fc2.weight", "mlp.fc2.bias", "gamma_1", "gamma_2")
MASK_TOKEN = Transform("mask_token", lambda t: t.reshape(-1), lambda t: t.reshape(1, 1, -1))
INDEX_REASON = "relative_position_index buffer, checked equal to the one rebuilt from the grid"


def is_beit_state(state: dict) -> bool:
    return "patch_embed.proj.weight" in state and any(k.startswith("blocks.") for k in state)


def beit_map(finetuned: bool, per_layer: bool, with_gamma: bool = True) -> KeyMap:
    block = [p for p in _BEIT_BLOCK if with_gamma or not p.startswith("gamma")]
    km = (_pairs(("cls_token", "modality.extra_tokens")) + _wb("patch_embed.proj", "modality.local_encoder.proj")
          + KeyMap(tuple((f"blocks.{{}}.{p}", f"encoder.blocks.{{}}.{p}") for p in block)))
    if per_layer:
        km = km + _pairs(("blocks.{}.attn.relative_position_bias_table",
                          "modality.rel_pos_bias.{}.relative_position_bias_table"))
    else:
        km = km + _pairs(("rel_pos_bias.relative_position_bias_table",
                          "modality.rel_pos_bias.relative_position_bias_table"))
    if finetuned:
        return km + _wb("fc_norm", "head.fc_norm") + _wb("head", "head.head")
    return km + _pairs(("mask_token", "mask_emb", MASK_TOKEN)) + _wb("norm", "encoder.norm") + _wb("lm_head", "head")


def fuse_beit_qv(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """BEiT's `attn.q_bias` / `attn.v_bias` -> our fused `attn.qkv.bias` = cat(q, 0, v).

    BEiT has no k bias. A k bias adds q.b_k to every score of a query, the same for all keys,
    and softmax is unchanged by a per-row constant, so a zero k bias is exact.
    """
    out = dict(state)
    for key in [k for k in state if k.endswith(".attn.q_bias")]:
        base = key[: -len("q_bias")]
        if base + "v_bias" not in out:
            raise KeyMapError(f"{where}: missing key {base + 'v_bias'!r} (the file has {key!r})")
        q, v = out.pop(key), out.pop(base + "v_bias")
        out[base + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out


def split_beit_qkv(state: dict[str, Tensor], drop_k_bias: bool, where: str) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        if key.endswith(".attn.qkv.bias"):
            q, k, v = value.chunk(3, 0)
            if bool(k.ne(0).any()) and not drop_k_bias:
                raise ValueError(
                    f"{where}: {key!r} has a non-zero k part (max |b_k| = {k.abs().max().item():.3g}); BEiT stores no "
                    "k bias. It cannot change the attention (softmax ignores a per-query constant), so pass "
                    "drop_k_bias=True (`--drop-k-bias`) to leave it out")
            base = key[: -len("qkv.bias")]
            out[base + "q_bias"], out[base + "v_bias"] = q.clone(), v.clone()
        else:
            out[key] = value
    return out


def _grid_from_table(rows: int, key: str, where: str) -> int:
    g = (math.isqrt(rows - 3) + 1) // 2 if rows > 3 else 0
    if g < 1 or (2 * g - 1) ** 2 + 3 != rows:
        raise KeyMapError(f"{where}: {key!r} has {rows} rows, not (2g-1)^2 + 3 for a square grid g")
    return g


def _beit_args(ckpt: dict) -> dict:
    args = ckpt.get("args")
    return args if isinstance(args, dict) else {}


def beit_config(state: dict, args: dict, where: str, num_heads: Optional[int], per_layer: bool) -> PretrainConfig:
    """Sizes from the tensors: width (cls_token), depth (blocks), MLP ratio (fc1), patch size and
    channels (patch_embed), grid (bias table rows), heads (bias table columns)."""
    for key in ("cls_token", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"):
        if key not in state:
            raise KeyMapError(f"{where}: missing key {key!r}")
    dim = int(state["cls_token"].shape[-1])
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    _, chans, patch, _ = state["patch_embed.proj.weight"].shape
    table_key = "blocks.0.attn.relative_position_bias_table" if per_layer else "rel_pos_bias.relative_position_bias_table"
    if table_key not in state:
        raise KeyMapError(f"{where}: missing key {table_key!r} (needed for the grid and the number of heads)")
    rows, heads = state[table_key].shape
    grid = _grid_from_table(int(rows), table_key, where)
    if num_heads is not None and num_heads != heads:
        raise ConfigError(f"{where}: num_heads={num_heads} given, but {table_key!r} has {heads} head columns")
    if dim in HEADS_BY_DIM and HEADS_BY_DIM[dim] != heads:
        raise ConfigError(f"{where}: width {dim} usually has {HEADS_BY_DIM[dim]} heads, but {table_key!r} has {heads}")
    data = to_dict(get_preset("data2vec_image_large" if dim == 1024 else "data2vec_image_base"))
    model = data["model"]
    enc, inp = model["encoder"], model["input"]
    enc.update(dim=dim, depth=depth, num_heads=int(heads),
               mlp_ratio=int(state["blocks.0.mlp.fc1.weight"].shape[0]) / dim)
    if "blocks.0.gamma_1" not in state:
        enc["layer_scale_init"] = 0.0
    inp.update(image_size=int(grid * patch), patch_size=int(patch), in_chans=int(chans),
               rel_pos_bias="per_layer" if per_layer else "shared")
    model["targets"]["top_k"] = min(6, depth)  # BEiT data2vec: the top 6 blocks (reference 1.4)
    # Settings from the run's `args` where present (BEiT argument names).
    for ours, theirs in (("encoder.layer_scale_init", "layer_scale_init_value"), ("encoder.drop_path", "drop_path"),
                         ("encoder.attn_dropout", "attn_drop_rate"), ("input.num_mask_patches", "num_mask_patches"),
                         ("teacher.decay", "ema_decay"), ("teacher.end_decay", "ema_decay")):
        if ours.startswith("encoder.layer_scale") and enc["layer_scale_init"] == 0.0:
            continue
        _copy(args, theirs, model, ours)
    if "target_layers" in args:
        layers = args["target_layers"]
        if isinstance(layers, str):
            layers = ast.literal_eval(layers)
        if list(layers) != list(range(depth - len(layers), depth)):
            raise ConfigError(f"{where}: args.target_layers={layers} are not the top blocks of {depth}")
        model["targets"]["top_k"] = len(layers)
    if inp["num_mask_patches"] >= grid * grid:
        inp["num_mask_patches"] = max(1, int(0.6 * grid * grid))
    return _build_cfg(data, where)


def beit_args(cfg: PretrainConfig, head: Optional[HeadConfig]) -> dict[str, Any]:
    """The `args` our BEiT export writes: BEiT argument names the importer reads back."""
    enc, inp = cfg.model.encoder, cfg.model.input
    size = {768: "base", 1024: "large"}.get(enc.dim, f"d{enc.dim}")
    out: dict[str, Any] = {
        "model": f"beit_{size}_patch{inp.patch_size}_{inp.image_size}", "input_size": inp.image_size,
        "layer_scale_init_value": enc.layer_scale_init, "drop_path": enc.drop_path, "attn_drop_rate": enc.attn_dropout,
        "num_mask_patches": inp.num_mask_patches, "ema_decay": cfg.model.teacher.decay,
        "target_layers": list(range(enc.depth - cfg.model.targets.top_k, enc.depth)),
        "written_by": "data2vec convert --to fairseq",
    }
    if head is not None:
        out["nb_classes"] = head.num_outputs
    return out


def _check_index(grid: int) -> Callable[[str, Any], None]:
    want = relative_position_index(grid, grid)

    def check(key: str, value: Any) -> None:
        if not isinstance(value, Tensor) or tuple(value.shape) != tuple(want.shape) or not torch.equal(value.long(), want):
            raise KeyMapError(f"key {key!r}: shape {tuple(getattr(value, 'shape', ()))}, expected BEiT's index "
                              f"{tuple(want.shape)} for a {grid}x{grid} grid with its values")

    return check


def _import_beit(ckpt: dict, path: Path, num_heads: Optional[int], dropped: list) -> Imported:
    state = dict(ckpt["model"]) if isinstance(ckpt.get("model"), dict) else dict(ckpt)
    finetuned = "fc_norm.weight" in state or "head.weight" in state
    per_layer = "blocks.0.attn.relative_position_bias_table" in state
    where = f"{path} [model]"
    if finetuned and "norm.weight" in state and "fc_norm.weight" not in state:
        raise CheckpointReadError(f"{path}: BEiT classifier on the CLS token (`norm` without `fc_norm`); only mean "
                                  "pooling with `fc_norm` is supported")
    if finetuned and "head.weight" not in state:
        raise KeyMapError(f"{where}: missing key 'head.weight'")
    cfg = beit_config(state, _beit_args(ckpt), where, num_heads, per_layer)
    grid = cfg.model.input.image_size // cfg.model.input.patch_size
    _drop(state, r"(rel_pos_bias|blocks\.\d+\.attn)\.relative_position_index", INDEX_REASON, dropped, "model.",
          _check_index(grid))
    head = HeadConfig("image_classification", int(state["head.weight"].shape[0]), final_norm=False) if finetuned else None
    gamma = "blocks.0.gamma_1" in state
    expected, model = _model_keys(cfg, head)
    student = map_state(fuse_beit_qv(state, where), beit_map(finetuned, per_layer, gamma), expected, where)
    teacher = None
    ema = ckpt.get("model_ema")
    if isinstance(ema, dict) and ema:
        ema = dict(ema)
        if finetuned:
            dropped.append(("model_ema", "EMA of the fine-tuned weights; the `model` weights are imported"))
        else:
            w = f"{path} [model_ema]"
            _drop(ema, r"(rel_pos_bias|blocks\.\d+\.attn)\.relative_position_index", INDEX_REASON, dropped,
                  "model_ema.", _check_index(grid))
            _drop(ema, r"mask_token|lm_head\.(weight|bias)", "the teacher sees unmasked images and has no regression "
                  "head (ours keeps them in the student only)", dropped, "model_ema.")
            km = KeyMap(tuple(r for r in beit_map(False, per_layer, gamma).rules
                              if not r[1].startswith(("mask_emb", "head"))))
            teacher = map_state(fuse_beit_qv(ema, w), km, model.make_teacher().module.state_dict(), w)
    return Imported(cfg, student, teacher, head, "BEiT repository .pth", dropped)


# --------------------------------------------------------------------------- 2.0 fine-tuned image / text
def _import_v2_classifier(ckpt: dict, model_cfg: dict, path: Path, state: dict, dropped: list) -> Imported:
    from data2vec.checkpoints.fairseq import detect_modality, rebuild_config

    inner = model_cfg.get("pretrained_model_args")
    inner = inner.get("model") if isinstance(inner, dict) else None
    if not isinstance(inner, dict):
        raise CheckpointReadError(f"{path}: cfg.model.pretrained_model_args.model is missing; the backbone's sizes "
                                  "cannot be known")
    inner_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    kind = detect_modality(inner, inner_state, path)
    cfg = rebuild_config(inner, kind, inner_state, path)
    _drop(state, r"model\.(_ema|modality_encoders\.\w+\.(decoder|encoder_mask|alibi_bias)(\..*)?)",
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
        km = KeyMap(rules) + _wb(f"classification_heads.{heads[0]}.dense", "head.dense") + _wb(
            f"classification_heads.{heads[0]}.out_proj", "head.out_proj")
    else:
        if "head.weight" not in state:
            raise KeyMapError(f"{path} [model]: missing key 'head.weight'")
        head = HeadConfig("image_classification", int(state["head.weight"].shape[0]), final_norm=False)
        km = KeyMap(rules) + _wb("fc_norm", "head.fc_norm") + _wb("head", "head.head")
    expected, _ = _model_keys(cfg, head)
    student = map_state(state, km, expected, f"{path} [model]")
    return Imported(cfg, student, None, head, f"fairseq {name}", dropped)


# --------------------------------------------------------------------------- dispatch
def import_checkpoint(path: str | Path, num_heads: Optional[int] = None) -> Imported:
    """Read any supported Meta checkpoint file (see the module docstring). Errors name the file
    and the key."""
    path = Path(path)
    try:
        return _import_checkpoint(path, num_heads)
    except (KeyMapError, ConfigError) as e:
        if str(path) in str(e):
            raise
        raise type(e)(f"{path}: {e}") from None


def _import_checkpoint(path: Path, num_heads: Optional[int]) -> Imported:
    ckpt = load_checkpoint(path)
    cfg = ckpt.get("cfg")
    dropped: list[tuple[str, str]] = []
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        resolve_interpolations(cfg, cfg)
        model_cfg = cfg["model"]
        name = model_cfg.get("_name")
        if name == "data2vec_multi":
            from data2vec.checkpoints.fairseq import import_fairseq

            c, s, t = import_fairseq(path)
            return Imported(c, s, t, None, "fairseq data2vec_multi", dropped)
        if not isinstance(ckpt.get("model"), dict):
            raise CheckpointReadError(f"{path}: checkpoint has no 'model' state dict")
        state = dict(ckpt["model"])
        if name == "data2vec_audio":
            return _import_audio(ckpt, model_cfg, path, state, dropped)
        if name == "data2vec_text" or (isinstance(name, str) and name.startswith("roberta")
                                       and any(k.startswith(("encoder.sentence_encoder.", "decoder.sentence_encoder."))
                                               for k in state)):
            return _import_text(ckpt, model_cfg, path, state, dropped)
        if name == "wav2vec_ctc":
            return _import_ctc(ckpt, model_cfg, path, state, dropped)
        if name in ("mae_image_classification", "data2vec_text_classification"):
            return _import_v2_classifier(ckpt, model_cfg, path, state, dropped)
        raise CheckpointReadError(
            f"{path}: cfg.model._name is {name!r}; supported: data2vec_multi, data2vec_audio, data2vec_text "
            "(and RoBERTa-style classifiers over it), wav2vec_ctc, mae_image_classification, "
            "data2vec_text_classification")
    model = ckpt.get("model") if isinstance(ckpt.get("model"), dict) else ckpt
    if is_beit_state(model):
        return _import_beit(ckpt, path, num_heads, dropped)
    has_args = ckpt.get("args") is not None
    raise CheckpointReadError(
        f"{path}: neither a fairseq 'cfg.model' checkpoint nor a BEiT-repository state dict"
        + (" (it stores old-style 'args'; only 'cfg' files are supported)" if has_args else ""))


# --------------------------------------------------------------------------- export
def _kind(cfg: PretrainConfig) -> str:
    return cfg.model.input.kind


def d2v2_model_cfg(cfg: PretrainConfig) -> dict[str, Any]:
    """The `cfg.model` a fairseq `data2vec_multi` file would store for `cfg` (inverse of the
    import tables in `fairseq.py`)."""
    kind, ours = _kind(cfg), to_dict(cfg)["model"]
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


def _export_map(state: dict[str, Tensor], km: KeyMap, where: str) -> dict[str, Tensor]:
    return map_state(state, km.inverse(), None, where)


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
    version, kind, where = cfg.model.version, _kind(cfg), f"export {path}"
    ckpt: dict[str, Any]
    if version == 2 and head is None:
        state = _export_map(student, fairseq_d2v2_student_map(kind), where)
        if teacher is not None:
            km = fairseq_d2v2_teacher_map(kind, cfg.model.teacher.scope == "blocks")
            state["_ema"] = _export_map(teacher, km, where + " teacher")
        ckpt = {"cfg": {"model": d2v2_model_cfg(cfg), "task": {"_name": kind}}, "model": state}
    elif version == 2:
        rules = tuple(r for r in fairseq_d2v2_student_map(kind).rules if not r[1].startswith(("decoder.", "encoder.norm")))
        inner = {"model": d2v2_model_cfg(cfg), "task": {"_name": kind}}
        if head.kind == "ctc" and kind == "audio":
            km = KeyMap(tuple((W2V + r[0], *r[1:]) for r in rules)) + _wb("w2v_encoder.proj", "head.proj")
            model_cfg = {"_name": "wav2vec_ctc", "w2v_path": None, "w2v_args": inner}
        elif head.kind == "image_classification" and kind == "image" and not head.final_norm:
            km = KeyMap(tuple(("model." + r[0], *r[1:]) for r in rules)) + _wb("fc_norm", "head.fc_norm") + _wb(
                "head", "head.head")
            model_cfg = {"_name": "mae_image_classification", "pretrained_model_args": inner}
        elif head.kind == "sequence_classification" and kind == "text":
            name = "classification_heads.sentence_classification_head"
            km = KeyMap(tuple(("model." + r[0], *r[1:]) for r in rules)) + _wb(f"{name}.dense", "head.dense") + _wb(
                f"{name}.out_proj", "head.out_proj")
            model_cfg = {"_name": "data2vec_text_classification", "pretrained_model_args": inner}
        else:
            raise ValueError(f"{where}: no fairseq layout for a data2vec 2.0 {kind} model with a {head.kind} head "
                             "(supported: audio ctc, image image_classification, text sequence_classification)")
        ckpt = {"cfg": {"model": model_cfg, "task": {"_name": kind}}, "model": _export_map(student, km, where)}
    elif version == 1 and kind == "audio":
        if head is None:
            state = split_qkv(_export_map(student, audio_v1_map(cfg), where))
            if teacher is not None:
                state["_ema"] = split_qkv(_export_map(teacher, _audio_context(cfg, ""), where + " teacher"))
            ckpt = {"cfg": {"model": audio_v1_model_cfg(cfg), "task": {"_name": "audio_pretraining"}}, "model": state}
        else:
            _need(head, "ctc", cfg)
            km = audio_v1_map(cfg, W2V, pretraining=False) + _wb("w2v_encoder.proj", "head.proj")
            state = split_qkv(_export_map(student, km, where))
            # fairseq's wrapper keeps the backbone's mask embedding (used only for fine-tuning-time
            # masking); ours has none, so a zero one lets fairseq's strict load accept the file.
            state[W2V + "mask_emb"] = torch.zeros(cfg.model.encoder.dim)
            ckpt = {"cfg": {"model": {"_name": "wav2vec_ctc", "w2v_path": None,
                                      "w2v_args": {"model": audio_v1_model_cfg(cfg),
                                                   "task": {"_name": "audio_pretraining"}}},
                            "task": {"_name": "audio_finetuning"}}, "model": state}
    elif version == 1 and kind == "text":
        version_buffer = torch.tensor([3.0])  # fairseq TransformerEncoder's format version
        if head is None:
            state = split_qkv(_export_map(student, text_v1_map(cfg), where))
            if teacher is not None:
                ema = split_qkv(_export_map(teacher, _text_embed(""), where + " teacher"))
                ema["version"] = version_buffer.clone()
                state["encoder._ema"] = ema
        else:
            _need(head, "sequence_classification", cfg)
            name = "classification_heads.sentence_classification_head"
            km = text_v1_map(cfg, pretraining=False) + _wb(f"{name}.dense", "head.dense") + _wb(
                f"{name}.out_proj", "head.out_proj")
            state = split_qkv(_export_map(student, km, where))
        state[SENTENCE + "version"] = version_buffer
        ckpt = {"cfg": {"model": text_v1_model_cfg(cfg), "task": {"_name": "masked_lm"}}, "model": state}
    elif version == 1 and kind == "beit":
        finetuned = head is not None
        if finetuned:
            _need(head, "image_classification", cfg)
            if head.final_norm:
                raise ValueError(f"{where}: a BEiT classifier with the final norm kept has no BEiT layout")
        per_layer = cfg.model.input.rel_pos_bias == "per_layer"
        gamma = cfg.model.encoder.layer_scale_init > 0
        grid = cfg.model.input.image_size // cfg.model.input.patch_size
        km = beit_map(finetuned, per_layer, gamma)
        state = split_beit_qkv(_export_map(student, km, where), drop_k_bias, where)
        _add_index(state, grid, cfg.model.encoder.depth, per_layer)
        ckpt = {"model": state, "args": beit_args(cfg, head)}
        if teacher is not None:
            tkm = KeyMap(tuple(r for r in km.rules if not r[1].startswith(("mask_emb", "head"))))
            ema = split_beit_qkv(_export_map(teacher, tkm, where + " teacher"), drop_k_bias, where + " teacher")
            # BEiT's EMA is of the whole model; ours does not average these two, so the
            # student's values stand in (the import drops them again).
            for k in ("mask_token", "lm_head.weight", "lm_head.bias"):
                if k in state:
                    ema[k] = state[k].clone()
            _add_index(ema, grid, cfg.model.encoder.depth, per_layer)
            ckpt["model_ema"] = ema
    else:
        what = f"data2vec {version}.0 {kind}" + (f" with a {head.kind} head" if head else "")
        raise ValueError(f"{where}: no fairseq/BEiT layout for a {what} model")
    torch.save(ckpt, path)
    return path


def _need(head: HeadConfig, kind: str, cfg: PretrainConfig) -> None:
    if head.kind != kind:
        raise ValueError(f"no fairseq layout for a data2vec 1.0 {cfg.model.input.kind} model with a {head.kind} head "
                         f"(supported: {kind})")


def _add_index(state: dict[str, Tensor], grid: int, depth: int, per_layer: bool) -> None:
    index = relative_position_index(grid, grid)
    if per_layer:
        for i in range(depth):
            state[f"blocks.{i}.attn.relative_position_index"] = index.clone()
    else:
        state["rel_pos_bias.relative_position_index"] = index
