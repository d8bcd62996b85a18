"""BEiT-repository (`facebookresearch/data2vec_vision`) `.pth` files of data2vec 1.0 vision,
pretrained (`model`, `model_ema`) and fine-tuned image classifiers, in and out. They store no
config: sizes are read off the tensors."""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from data2vec.checkpoints.fairseq import copy_setting
from data2vec.checkpoints.fairseq_common import build_config, drop_matching, export_map, model_keys, require_head
from data2vec.checkpoints.imported import Imported
from data2vec.checkpoints.keymaps import KeyMap, KeyMapError, Transform, map_state, pairs, weight_bias
from data2vec.checkpoints.unpickle import CheckpointReadError
from data2vec.config import ConfigError, PretrainConfig, to_dict
from data2vec.heads.finetuned import HeadConfig
from data2vec.nn.relpos import relative_position_index
from data2vec.presets import get_preset

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
    km = (pairs(("cls_token", "modality.extra_tokens")) + weight_bias("patch_embed.proj", "modality.local_encoder.proj")
          + KeyMap(tuple((f"blocks.{{}}.{p}", f"encoder.blocks.{{}}.{p}") for p in block)))
    if per_layer:
        km = km + pairs(("blocks.{}.attn.relative_position_bias_table",
                          "modality.rel_pos_bias.{}.relative_position_bias_table"))
    else:
        km = km + pairs(("rel_pos_bias.relative_position_bias_table",
                          "modality.rel_pos_bias.relative_position_bias_table"))
    if finetuned:
        return km + weight_bias("fc_norm", "head.fc_norm") + weight_bias("head", "head.head")
    return km + pairs(("mask_token", "mask_emb", MASK_TOKEN)) + weight_bias("norm", "encoder.norm") + weight_bias("lm_head", "head")


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
        copy_setting(args, theirs, model, ours)
    if "target_layers" in args:
        layers = args["target_layers"]
        if isinstance(layers, str):
            layers = ast.literal_eval(layers)
        if list(layers) != list(range(depth - len(layers), depth)):
            raise ConfigError(f"{where}: args.target_layers={layers} are not the top blocks of {depth}")
        model["targets"]["top_k"] = len(layers)
    if inp["num_mask_patches"] >= grid * grid:
        inp["num_mask_patches"] = max(1, int(0.6 * grid * grid))
    return build_config(data, where)


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


def import_beit(ckpt: dict, path: Path, num_heads: Optional[int], dropped: list) -> Imported:
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
    drop_matching(state, r"(rel_pos_bias|blocks\.\d+\.attn)\.relative_position_index", INDEX_REASON, dropped, "model.",
          _check_index(grid))
    head = HeadConfig("image_classification", int(state["head.weight"].shape[0]), final_norm=False) if finetuned else None
    gamma = "blocks.0.gamma_1" in state
    expected, model = model_keys(cfg, head)
    student = map_state(fuse_beit_qv(state, where), beit_map(finetuned, per_layer, gamma), expected, where)
    teacher = None
    ema = ckpt.get("model_ema")
    if isinstance(ema, dict) and ema:
        ema = dict(ema)
        if finetuned:
            dropped.append(("model_ema", "EMA of the fine-tuned weights; the `model` weights are imported"))
        else:
            w = f"{path} [model_ema]"
            drop_matching(ema, r"(rel_pos_bias|blocks\.\d+\.attn)\.relative_position_index", INDEX_REASON, dropped,
                  "model_ema.", _check_index(grid))
            drop_matching(ema, r"mask_token|lm_head\.(weight|bias)", "the teacher sees unmasked images and has no regression "
                  "head (ours keeps them in the student only)", dropped, "model_ema.")
            km = KeyMap(tuple(r for r in beit_map(False, per_layer, gamma).rules
                              if not r[1].startswith(("mask_emb", "head"))))
            teacher = map_state(fuse_beit_qv(ema, w), km, model.make_teacher().module.state_dict(), w)
    return Imported(cfg, student, teacher, head, "BEiT repository .pth", dropped)


# --------------------------------------------------------------------------- export
def export_beit(cfg: PretrainConfig, student: dict[str, Tensor], teacher: Optional[dict[str, Tensor]],
                head: Optional[HeadConfig], drop_k_bias: bool, where: str) -> dict[str, Any]:
    """The BEiT-repository `.pth` dict (`model`, `model_ema`, `args`) of a 1.0 vision model."""
    finetuned = head is not None
    if finetuned:
        require_head(head, "image_classification", cfg)
        if head.final_norm:
            raise ValueError(f"{where}: a BEiT classifier with the final norm kept has no BEiT layout")
    per_layer = cfg.model.input.rel_pos_bias == "per_layer"
    gamma = cfg.model.encoder.layer_scale_init > 0
    grid = cfg.model.input.image_size // cfg.model.input.patch_size
    km = beit_map(finetuned, per_layer, gamma)
    state = split_beit_qkv(export_map(student, km, where), drop_k_bias, where)
    _add_index(state, grid, cfg.model.encoder.depth, per_layer)
    ckpt: dict[str, Any] = {"model": state, "args": beit_args(cfg, head)}
    if teacher is not None:
        tkm = KeyMap(tuple(r for r in km.rules if not r[1].startswith(("mask_emb", "head"))))
        ema = split_beit_qkv(export_map(teacher, tkm, where + " teacher"), drop_k_bias, where + " teacher")
        # BEiT's EMA is of the whole model; ours does not average these two, so the
        # student's values stand in (the import drops them again).
        for k in ("mask_token", "lm_head.weight", "lm_head.bias"):
            if k in state:
                ema[k] = state[k].clone()
        _add_index(ema, grid, cfg.model.encoder.depth, per_layer)
        ckpt["model_ema"] = ema
    return ckpt


def _add_index(state: dict[str, Tensor], grid: int, depth: int, per_layer: bool) -> None:
    index = relative_position_index(grid, grid)
    if per_layer:
        for i in range(depth):
            state[f"blocks.{i}.attn.relative_position_index"] = index.clone()
    else:
        state["rel_pos_bias.relative_position_index"] = index
