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
from data2vec.checkpoints.fairseq import MODALITY_FIELDS, MODEL_FIELDS, PRESET_FOR
from data2vec.checkpoints.keymaps import (
    FAIRSEQ_MODALITY, fairseq_d2v2_student_map, fairseq_d2v2_teacher_map, map_state,
)
from data2vec.config import PretrainConfig, apply_overrides, to_dict
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
    """The `cfg.model` fairseq would store for `cfg`, field by field (inverse of the tables)."""
    ours = to_dict(cfg)["model"]
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
        layers = [f"[({cfg.model.input.conv_channels}, {k}, {s})]"
                  for k, s in zip(cfg.model.input.conv_kernels, cfg.model.input.conv_strides)]
        mod["feature_encoder_spec"] = " + ".join(layers)
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
