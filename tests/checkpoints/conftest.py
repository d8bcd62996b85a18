"""Build fairseq-format data2vec 2.0 checkpoints from tiny models of ours (nothing can be
downloaded): weights under fairseq's key names (the inverse key maps), an `_ema` teacher,
and a `cfg` made of stand-ins that pickle exactly like OmegaConf `DictConfig` objects."""

from __future__ import annotations

import sys
import types
import typing
from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch

from data2vec.algorithms.data2vec2 import Data2Vec2Model
from data2vec.checkpoints.fairseq import PRESET_FOR
from data2vec.checkpoints.fairseq_v2_finetuned import d2v2_model_cfg
from data2vec.checkpoints.keymaps import fairseq_d2v2_student_map, fairseq_d2v2_teacher_map, map_state
from data2vec.config import PretrainConfig, apply_overrides
from data2vec.presets import get_preset, tiny_overrides


def _make_omegaconf_module() -> dict[str, types.ModuleType]:
    """Fake `omegaconf.*` modules whose classes pickle by those names, with OmegaConf's state
    layout: containers hold `_metadata`, `_parent` and `_content`; value nodes hold `_val`."""
    base, dictconfig, nodes = (types.ModuleType(n) for n in ("omegaconf.base", "omegaconf.dictconfig", "omegaconf.nodes"))

    class ContainerMetadata:
        def __init__(self, **kw: Any) -> None:
            self.__dict__.update(kw)

    class AnyNode:
        def __init__(self, value: Any, parent: Any) -> None:
            self.__dict__.update(_val=value, _parent=parent,
                                 _metadata=ContainerMetadata(ref_type=typing.Optional[str], object_type=None, optional=True))

    class DictConfig:
        def __init__(self, content: dict[str, Any], parent: Any = None) -> None:
            meta = ContainerMetadata(ref_type=typing.Any, object_type=dict, key_type=str, optional=True)
            self.__dict__.update(_metadata=meta, _parent=parent, _content={})
            for k, v in content.items():
                self._content[k] = DictConfig(v, self) if isinstance(v, dict) else AnyNode(v, self)

        def __getstate__(self) -> dict[str, Any]:
            return dict(self.__dict__)

    for cls, mod in ((ContainerMetadata, base), (AnyNode, nodes), (DictConfig, dictconfig)):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    package = types.ModuleType("omegaconf")  # pickle imports the parent package first
    package.__path__ = []
    return {m.__name__: m for m in (package, base, dictconfig, nodes)}


@pytest.fixture
def fake_omegaconf(monkeypatch):
    mods = _make_omegaconf_module()
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return mods["omegaconf.dictconfig"].DictConfig


def tiny_config(kind: str) -> PretrainConfig:
    return apply_overrides(get_preset(PRESET_FOR[kind]), tiny_overrides(kind))


def fairseq_model_cfg(cfg: PretrainConfig, kind: str) -> dict[str, Any]:
    """The `cfg.model` fairseq would store for `cfg` (the exporter's), with the image decoder
    width stored as an OmegaConf interpolation, as fairseq's own files have it."""
    model = d2v2_model_cfg(cfg)
    mod = model["modalities"][kind]
    if kind == "image" and mod["decoder"]["decoder_dim"] == model["embed_dim"]:
        mod["decoder"]["decoder_dim"] = "${model.embed_dim}"  # OmegaConf keeps interpolations unresolved
    return model


def fairseq_state(model: Data2Vec2Model, teacher_module: Optional[torch.nn.Module], kind: str) -> dict[str, Any]:
    """Our tensors under fairseq's key names, with `_ema` as fairseq nests it."""
    state = map_state(model.state_dict(), fairseq_d2v2_student_map(kind).inverse(), None, "export")
    if teacher_module is not None:
        encoder_only = model.cfg.teacher.scope == "blocks"
        inv = fairseq_d2v2_teacher_map(kind, encoder_only).inverse()
        state["_ema"] = map_state(teacher_module.state_dict(), inv, None, "export teacher")
    return state


def make_model(kind: str, seed: int = 0) -> tuple[PretrainConfig, Data2Vec2Model, torch.nn.Module]:
    """A tiny model of `kind` and an EMA teacher whose weights differ from the student's."""
    torch.manual_seed(seed)
    cfg = tiny_config(kind)
    model = Data2Vec2Model(cfg.model).eval()
    teacher = model.make_teacher().module
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return cfg, model, teacher


@pytest.fixture
def write_fairseq(fake_omegaconf, tmp_path) -> Callable[..., Any]:
    """write_fairseq(kind, mutate=None, with_ema=True, mutate_cfg=None, plain_cfg=False) -> (path,
    cfg, model, teacher_module); `mutate(state)` / `mutate_cfg(model_cfg)` edit what is saved."""

    def write(kind: str, mutate: Optional[Callable[[dict], None]] = None, with_ema: bool = True,
              mutate_cfg: Optional[Callable[[dict], None]] = None, plain_cfg: bool = False):
        cfg, model, teacher = make_model(kind)
        state = fairseq_state(model, teacher if with_ema else None, kind)
        if mutate is not None:
            mutate(state)
        model_cfg = fairseq_model_cfg(cfg, kind)
        if mutate_cfg is not None:
            mutate_cfg(model_cfg)
        stored = {"model": model_cfg, "task": {"_name": "x"}}
        # Newer fairseq stores OmegaConf.to_container(cfg) (plain dicts); older files the DictConfig.
        ckpt = {"cfg": stored if plain_cfg else fake_omegaconf(stored),
                "model": state, "args": None, "optimizer_history": [{"num_updates": 10}],
                "extra_state": {"epoch": 2, "val_loss": np.float64(1.5), "lr": np.arange(3.0)}}
        path = tmp_path / f"{kind}.pt"
        torch.save(ckpt, path)
        return path, cfg, model, teacher

    return write


@pytest.fixture
def tiny_model() -> Callable[..., tuple[PretrainConfig, Data2Vec2Model, torch.nn.Module]]:
    """make_model(kind) -> (config, model, teacher module) for tests outside this file."""
    return make_model


# --------------------------------------------------------------------------- data2vec 1.0 files
V1_PRESET = {"audio": "data2vec_audio_base", "text": "data2vec_text_base", "beit": "data2vec_image_base"}


def tiny_v1_config(kind: str, per_layer: bool = False) -> PretrainConfig:
    cfg = apply_overrides(get_preset(V1_PRESET[kind]), tiny_overrides(kind, version=1))
    return apply_overrides(cfg, ["model.input.rel_pos_bias=per_layer"]) if per_layer else cfg


def _zero_k_bias(module: torch.nn.Module) -> None:
    """BEiT has no k bias; ours is zero on import, so fake BEiT weights keep it zero."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("attn.qkv.bias"):
                p[p.shape[0] // 3: 2 * p.shape[0] // 3] = 0


def make_v1_model(kind: str, head=None, seed: int = 0):
    """(config, model, teacher module or None): a tiny 1.0 model (fine-tuned `EncoderWithHead`
    when `head` is a HeadConfig) with random non-zero weights everywhere, and an EMA teacher
    whose weights differ from the student's."""
    from data2vec.models import build_model

    torch.manual_seed(seed)
    cfg = tiny_v1_config(kind, per_layer=head is not None and kind == "beit")
    model = build_model(cfg.model, head).eval()
    with torch.no_grad():  # biases, LayerNorms and relative-position tables start constant
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    teacher = None
    if head is None:
        teacher = model.make_teacher().module
        with torch.no_grad():
            for p in teacher.parameters():
                p.add_(0.01 * torch.randn_like(p))
    if kind == "beit":
        _zero_k_bias(model)
        if teacher is not None:
            _zero_k_bias(teacher)
    return cfg, model, teacher


@pytest.fixture
def write_v1(fake_omegaconf, tmp_path) -> Callable[..., Any]:
    """write_v1(kind, head=None, mutate=None, with_ema=True) -> (path, cfg, model, teacher).

    The file is written by our exporter, then re-saved the way fairseq saves it: `cfg` as an
    OmegaConf DictConfig (stand-ins), optimizer history and numpy extra state; `mutate(ckpt)`
    edits it in between."""
    from data2vec.checkpoints.fairseq_v1 import export_fairseq

    def write(kind: str, head=None, mutate: Optional[Callable[[dict], None]] = None, with_ema: bool = True):
        cfg, model, teacher = make_v1_model(kind, head)
        path = tmp_path / f"{kind}_{head.kind if head else 'pretrain'}.pt"
        export_fairseq(path, cfg, model.state_dict(), teacher.state_dict() if teacher is not None and with_ema else None,
                       head)
        ckpt = torch.load(path, weights_only=True)
        if "cfg" in ckpt:
            ckpt["cfg"] = fake_omegaconf(ckpt["cfg"])
            ckpt.update(optimizer_history=[{"num_updates": 10}], extra_state={"val_loss": np.float64(1.5)})
        if mutate is not None:
            mutate(ckpt)
        torch.save(ckpt, path)
        return path, cfg, model, teacher

    return write


def beit_index(wh: int, ww: int) -> torch.Tensor:
    """BEiT's `relative_position_index`, transcribed from its RelativePositionBias (independent
    of data2vec.nn.relpos)."""
    coords = torch.stack(torch.meshgrid([torch.arange(wh), torch.arange(ww)], indexing="ij"))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    n = (2 * wh - 1) * (2 * ww - 1) + 3
    index = torch.zeros(size=(wh * ww + 1,) * 2, dtype=rel.dtype)
    index[1:, 1:] = rel.sum(-1)
    index[0, 0:] = n - 3
    index[0:, 0] = n - 2
    index[0, 0] = n - 1
    return index


def beit_state_by_hand(model: torch.nn.Module, grid: int, finetuned: bool = False) -> dict[str, torch.Tensor]:
    """A BEiT-repository state dict written name by name from our modules (no key maps)."""
    m, enc = model.modality, model.encoder
    D = enc.blocks[0].norm1.weight.shape[0]
    s = {"cls_token": m.extra_tokens, "patch_embed.proj.weight": m.local_encoder.proj.weight,
         "patch_embed.proj.bias": m.local_encoder.proj.bias}
    if finetuned:
        s["fc_norm.weight"], s["fc_norm.bias"] = model.head.fc_norm.weight, model.head.fc_norm.bias
        s["head.weight"], s["head.bias"] = model.head.head.weight, model.head.head.bias
    else:
        s["mask_token"] = model.mask_emb.reshape(1, 1, D)
        s["rel_pos_bias.relative_position_bias_table"] = m.rel_pos_bias.relative_position_bias_table
        s["rel_pos_bias.relative_position_index"] = beit_index(grid, grid)
        s["norm.weight"], s["norm.bias"] = enc.norm.weight, enc.norm.bias
        s["lm_head.weight"], s["lm_head.bias"] = model.head.weight, model.head.bias
    for i, blk in enumerate(enc.blocks):
        b = f"blocks.{i}."
        s[b + "gamma_1"], s[b + "gamma_2"] = blk.gamma_1, blk.gamma_2
        s[b + "norm1.weight"], s[b + "norm1.bias"] = blk.norm1.weight, blk.norm1.bias
        s[b + "norm2.weight"], s[b + "norm2.bias"] = blk.norm2.weight, blk.norm2.bias
        s[b + "attn.qkv.weight"] = blk.attn.qkv.weight
        s[b + "attn.q_bias"], s[b + "attn.v_bias"] = blk.attn.qkv.bias[:D], blk.attn.qkv.bias[2 * D:]
        s[b + "attn.proj.weight"], s[b + "attn.proj.bias"] = blk.attn.proj.weight, blk.attn.proj.bias
        s[b + "mlp.fc1.weight"], s[b + "mlp.fc1.bias"] = blk.mlp.fc1.weight, blk.mlp.fc1.bias
        s[b + "mlp.fc2.weight"], s[b + "mlp.fc2.bias"] = blk.mlp.fc2.weight, blk.mlp.fc2.bias
        if finetuned:
            s[b + "attn.relative_position_bias_table"] = m.rel_pos_bias[i].relative_position_bias_table
            s[b + "attn.relative_position_index"] = beit_index(grid, grid)
    return {k: v.detach().clone() for k, v in s.items()}


def audio_state_by_hand(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A fairseq `data2vec_audio` state dict written name by name (separate q/k/v, pos_conv
    from index 0, the released file's `final_proj.0.*`)."""
    m, enc = model.modality, model.encoder
    s = {"mask_emb": model.mask_emb, "final_proj.0.weight": model.head.weight, "final_proj.0.bias": model.head.bias,
         "layer_norm.weight": m.local_encoder.project_features[1].weight,
         "layer_norm.bias": m.local_encoder.project_features[1].bias,
         "post_extract_proj.weight": m.local_encoder.project_features[2].weight,
         "post_extract_proj.bias": m.local_encoder.project_features[2].bias,
         "encoder.layer_norm.weight": m.context_encoder.input_norm.weight,
         "encoder.layer_norm.bias": m.context_encoder.input_norm.bias}
    for i, layer in enumerate(m.local_encoder.conv_layers):
        s[f"feature_extractor.conv_layers.{i}.0.weight"] = layer[0].weight
        s[f"feature_extractor.conv_layers.{i}.2.1.weight"] = layer[2][1].weight
        s[f"feature_extractor.conv_layers.{i}.2.1.bias"] = layer[2][1].bias
    convs = [mod for mod in m.relative_positional_encoder if isinstance(mod, torch.nn.Sequential)]
    for i, block in enumerate(convs):
        s[f"encoder.pos_conv.{i}.0.weight"], s[f"encoder.pos_conv.{i}.0.bias"] = block[0].weight, block[0].bias
    for i, blk in enumerate(enc.blocks):
        b, D = f"encoder.layers.{i}.", blk.norm1.weight.shape[0]
        for j, p in enumerate("qkv"):
            s[b + f"self_attn.{p}_proj.weight"] = blk.attn.qkv.weight[j * D:(j + 1) * D]
            s[b + f"self_attn.{p}_proj.bias"] = blk.attn.qkv.bias[j * D:(j + 1) * D]
        s[b + "self_attn.out_proj.weight"], s[b + "self_attn.out_proj.bias"] = blk.attn.proj.weight, blk.attn.proj.bias
        s[b + "self_attn_layer_norm.weight"], s[b + "self_attn_layer_norm.bias"] = blk.norm1.weight, blk.norm1.bias
        s[b + "fc1.weight"], s[b + "fc1.bias"] = blk.mlp.fc1.weight, blk.mlp.fc1.bias
        s[b + "fc2.weight"], s[b + "fc2.bias"] = blk.mlp.fc2.weight, blk.mlp.fc2.bias
        s[b + "final_layer_norm.weight"], s[b + "final_layer_norm.bias"] = blk.norm2.weight, blk.norm2.bias
    return {k: v.detach().clone() for k, v in s.items()}
