"""Import Meta's fairseq data2vec 2.0 (`data2vec_multi`) checkpoints without fairseq.

The model type and modality come from the stored config and the state-dict keys; the config is
rebuilt from our preset for that modality with every stored field we understand copied over
(the tables below); keys go through the declarative maps of `keymaps.py`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Optional

from torch import Tensor

from data2vec.checkpoints.keymaps import (
    FAIRSEQ_MODALITY, KeyMapError, fairseq_d2v2_student_map, fairseq_d2v2_teacher_map, fix_legacy_fairseq, map_state,
)
from data2vec.checkpoints.unpickle import CheckpointReadError, load_checkpoint, resolve_interpolations
from data2vec.config import ConfigError, PretrainConfig, from_dict, to_dict
from data2vec.models import build_model
from data2vec.presets import get_preset

PRESET_FOR = {"image": "data2vec2_image_base", "audio": "data2vec2_audio_base", "text": "data2vec2_text_base"}

# (our ModelConfig path, fairseq `cfg.model` field): copied when the field is stored.
MODEL_FIELDS = (
    ("encoder.dim", "embed_dim"), ("encoder.depth", "depth"), ("encoder.num_heads", "num_heads"),
    ("encoder.mlp_ratio", "mlp_ratio"), ("encoder.norm_first", "layer_norm_first"),
    ("encoder.dropout", "encoder_dropout"), ("encoder.attn_dropout", "attention_dropout"),
    ("encoder.activation_dropout", "activation_dropout"), ("encoder.drop_path", "end_drop_path_rate"),
    ("encoder.layer_drop", "layerdrop"), ("encoder.norm_eps", "norm_eps"),
    ("targets.top_k", "average_top_k_layers"), ("targets.instance_norm_layers", "instance_norm_target_layer"),
    ("targets.layer_norm_layers", "layer_norm_target_layer"), ("targets.layer_norm_final", "layer_norm_targets"),
    ("targets.instance_norm_final", "instance_norm_targets"),
    ("loss.beta", "loss_beta"), ("loss.scale", "loss_scale"), ("loss.cls_weight", "cls_loss"),
    ("teacher.decay", "ema_decay"), ("teacher.end_decay", "ema_end_decay"),
    ("teacher.anneal_steps", "ema_anneal_end_step"), ("clone_batch", "clone_batch"),
    # fairseq's "var" monitors are standard deviations (sqrt of the variance).
    ("min_target_std", "min_target_var"), ("min_pred_std", "min_pred_var"),
)
# (our ModelConfig path, field of `cfg.model.modalities.<kind>`), per modality.
_COMMON_MODALITY_FIELDS = (
    ("input.prenet_depth", "prenet_depth"), ("input.mask_prob", "mask_prob"),
    ("input.mask_noise_std", "mask_noise_std"),
    ("decoder.dim", "decoder.decoder_dim"), ("decoder.layers", "decoder.decoder_layers"),
    ("decoder.kernel", "decoder.decoder_kernel"), ("decoder.groups", "decoder.decoder_groups"),
    ("decoder.residual", "decoder.decoder_residual"), ("decoder.projection_layers", "decoder.projection_layers"),
    ("decoder.projection_ratio", "decoder.projection_ratio"), ("decoder.input_dropout", "decoder.input_dropout"),
)
MODALITY_FIELDS = {
    "image": _COMMON_MODALITY_FIELDS + (
        ("input.image_size", "input_size"), ("input.patch_size", "patch_size"), ("input.in_chans", "in_chans"),
        ("input.mask_prob_adjust", "mask_prob_adjust"), ("input.mask_length", "mask_length")),
    "audio": _COMMON_MODALITY_FIELDS + (
        ("input.conv_pos_width", "conv_pos_width"), ("input.conv_pos_groups", "conv_pos_groups"),
        ("input.conv_pos_depth", "conv_pos_depth"), ("input.mask_prob_adjust", "mask_prob_adjust"),
        ("input.mask_length", "mask_length"), ("input.alibi_scale_init", "alibi_scale")),
    "text": _COMMON_MODALITY_FIELDS + (
        ("input.max_positions", "max_source_positions"), ("input.embed_dropout", "dropout")),
}
# Stored settings our architecture cannot reproduce: (field, unsupported value). Pre-LN
# (`layer_norm_first`) moves fairseq's prenet norm to the end, which our prenet does not do.
MODEL_UNSUPPORTED = (("layer_norm_first", True), ("norm_affine", False))
UNSUPPORTED = {
    "image": (("use_alibi_encoder", True), ("fixed_positions", False), ("transformer_decoder", True)),
    "audio": (("use_alibi_encoder", False), ("learned_alibi_scale_per_layer", True),
              ("learned_alibi_scale_per_head", False), ("learned_alibi", True), ("conv_pos_pre_ln", True),
              ("extractor_mode", "default")),
    "text": (("use_alibi_encoder", True), ("learned_pos", False), ("no_scale_embedding", False),
             ("layernorm_embedding", False), ("no_token_positional_embeddings", True)),
}


def import_fairseq(
    path: str | Path, ckpt: Optional[dict[str, Any]] = None
) -> tuple[PretrainConfig, dict[str, Tensor], Optional[dict[str, Tensor]]]:
    """Read a fairseq data2vec 2.0 checkpoint (`ckpt`: its contents, when already loaded).

    Returns (config, student state dict for `Data2Vec2Model`, EMA teacher state dict for
    `model.make_teacher().module` or None when the file has no `_ema`).
    """
    path = Path(path)
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    model_cfg = stored_model_cfg(ckpt, path)
    if not isinstance(ckpt.get("model"), dict):
        raise CheckpointReadError(f"{path}: checkpoint has no 'model' state dict")
    state = dict(ckpt["model"])
    ema = state.pop("_ema", None)
    kind = detect_modality(model_cfg, state, path)
    cfg = rebuild_config(model_cfg, kind, state, path)
    model = build_model(cfg.model)
    state = fix_legacy_fairseq(state)
    student = map_state(state, fairseq_d2v2_student_map(kind), model.state_dict(), f"{path} [model]")
    teacher = None
    if ema is not None:
        teacher = _import_teacher(dict(ema), state, model, kind, cfg, path)
    return cfg, student, teacher


def _import_teacher(ema: dict, state: dict, model: Any, kind: str, cfg: PretrainConfig, path: Path) -> dict:
    """`_ema` -> our teacher module's state dict; `state` is the legacy-fixed student state."""
    encoder_only = cfg.model.teacher.scope == "blocks"
    ema = fix_legacy_fairseq(ema)
    positions = f"modality_encoders.{FAIRSEQ_MODALITY[kind]}.fixed_positional_encoder.positions"
    if not encoder_only and positions in state and positions not in ema:
        # The sin-cos table is frozen, so a teacher without its own copy uses the student's.
        ema[positions] = state[positions]
    expected = model.make_teacher().module.state_dict()
    return map_state(ema, fairseq_d2v2_teacher_map(kind, encoder_only), expected, f"{path} [model._ema]")


def stored_model_cfg(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    """`cfg.model` of a fairseq checkpoint as a plain dict (interpolations resolved)."""
    cfg = ckpt.get("cfg")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        has_args = ckpt.get("args") is not None
        raise CheckpointReadError(
            f"{path}: no 'cfg.model' in the checkpoint"
            + (" (it stores old-style 'args'; only data2vec 2.0 'cfg' files are supported)" if has_args else "")
        )
    resolve_interpolations(cfg, cfg)
    name = cfg["model"].get("_name")
    if name != "data2vec_multi":
        raise CheckpointReadError(
            f"{path}: cfg.model._name is {name!r}; only data2vec 2.0 'data2vec_multi' checkpoints are supported so far"
        )
    return cfg["model"]


def detect_modality(model_cfg: dict[str, Any], state: dict[str, Tensor], path: Path) -> str:
    """Our input kind from the state-dict keys, cross-checked with `supported_modality`."""
    names = sorted({k.split(".")[1] for k in state if k.startswith("modality_encoders.")})
    if len(names) != 1:
        raise CheckpointReadError(f"{path}: expected one modality encoder, found {names or 'none'}")
    by_name = {v: k for k, v in FAIRSEQ_MODALITY.items()}
    if names[0] not in by_name:
        raise CheckpointReadError(f"{path}: unknown modality encoder {names[0]!r}; known: {sorted(by_name)}")
    stored = model_cfg.get("supported_modality")
    if isinstance(stored, str) and stored.split(".")[-1].upper() != names[0]:
        raise CheckpointReadError(f"{path}: cfg.model.supported_modality={stored!r} but the weights are {names[0]}")
    return by_name[names[0]]


def rebuild_config(model_cfg: dict[str, Any], kind: str, state: dict[str, Tensor], path: Path) -> PretrainConfig:
    """Our preset for `kind` with the stored fairseq fields copied in (type-checked)."""
    mod_cfg = (model_cfg.get("modalities") or {}).get(kind) or {}
    checks = [(model_cfg, "cfg.model", MODEL_UNSUPPORTED), (mod_cfg, f"cfg.model.modalities.{kind}", UNSUPPORTED[kind])]
    for section, where, table in checks:
        for name, bad in table:
            if name in section and section[name] == bad:
                raise ConfigError(f"{path}: {where}.{name}={bad!r} is not supported by our model")
    data = to_dict(get_preset(PRESET_FOR[kind]))
    model = data["model"]
    for ours, theirs in MODEL_FIELDS:
        copy_setting(model_cfg, theirs, model, ours)
    for ours, theirs in MODALITY_FIELDS[kind]:
        copy_setting(mod_cfg, theirs, model, ours)
    if mod_cfg.get("decoder") is None and "decoder" in mod_cfg:
        raise ConfigError(f"{path}: cfg.model.modalities.{kind}.decoder is empty; no pretraining decoder stored")
    if "ema_encoder_only" in model_cfg:  # otherwise the preset's scope stands
        model["teacher"]["scope"] = ("blocks" if model_cfg["ema_encoder_only"]
                                     else "all" if mod_cfg.get("ema_local_encoder") else "context")
    m = f"modality_encoders.{FAIRSEQ_MODALITY[kind]}."
    if kind == "audio" and "feature_encoder_spec" in mod_cfg:
        _set_conv_spec(model["input"], mod_cfg["feature_encoder_spec"], path)
    if kind == "text":
        # The vocabulary comes from the task's dictionary, so read it off the embedding.
        embed = state.get(f"{m}local_encoder.embed_tokens.weight")
        if embed is None:
            raise KeyMapError(f"{path} [model]: missing key '{m}local_encoder.embed_tokens.weight'")
        model["input"]["vocab_size"] = int(embed.shape[0])
    try:
        return from_dict(PretrainConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: stored config does not fit our model: {e}") from e


def copy_setting(src: dict[str, Any], theirs: str, dst: dict[str, Any], ours: str) -> None:
    for part in theirs.split("."):
        if not isinstance(src, dict) or part not in src:
            return
        src = src[part]
    *parents, last = ours.split(".")
    for part in parents:
        dst = dst[part]
    dst[last] = src


def parse_conv_spec(spec: str) -> list[tuple[int, int, int]]:
    """fairseq's `feature_encoder_spec`, e.g. "[(512, 10, 5)] + [(512, 3, 2)] * 4", parsed
    without eval: only list/tuple literals of ints, `+` and `*` are accepted."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported expression {ast.dump(node)}")

    layers = ev(ast.parse(spec, mode="eval").body)
    if not isinstance(layers, list) or not all(isinstance(t, tuple) and len(t) == 3 for t in layers):
        raise ValueError(f"expected a list of (channels, kernel, stride), got {layers!r}")
    return layers


def _set_conv_spec(inp: dict[str, Any], spec: str, path: Path) -> None:
    try:
        layers = parse_conv_spec(spec)
    except (SyntaxError, ValueError) as e:
        raise ConfigError(f"{path}: cfg.model.modalities.audio.feature_encoder_spec={spec!r}: {e}") from None
    channels = {c for c, _, _ in layers}
    if len(channels) != 1:
        raise ConfigError(f"{path}: feature_encoder_spec has varying channels {sorted(channels)}; ours needs one")
    inp["conv_channels"] = channels.pop()
    inp["conv_kernels"] = [k for _, k, _ in layers]
    inp["conv_strides"] = [s for _, _, s in layers]
