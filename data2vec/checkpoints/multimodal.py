"""One modality of a multimodal checkpoint as a single-modality data2vec 2.0 checkpoint.

The selection is a declarative key map built from the single-modality model's own keys:
`modalities.NAME.*` -> `modality.*`, `decoders.NAME.*` -> `decoder.*`, `encoder.*` stays; the
other modalities' keys are left out (listed in `Imported.dropped`), any other key is an error,
and every tensor is shape-checked against the model it loads into.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from torch import Tensor

from data2vec.algorithms.multimodal import is_multimodal, modality_config, modality_names
from data2vec.checkpoints.imported import Imported
from data2vec.checkpoints.keymaps import KeyMap, map_state
from data2vec.config import PretrainConfig
from data2vec.models import build_model

PREFIXES = {"modality": "modalities.{}.", "decoder": "decoders.{}."}  # single-modality head -> multimodal


def multimodal_key(name: str, key: str) -> str:
    """The multimodal model's key of a single-modality model's `key`, for modality `name`."""
    head, _, rest = key.partition(".")
    return PREFIXES[head].format(name) + rest if head in PREFIXES else key


def modality_keymap(name: str, single_keys: list[str]) -> KeyMap:
    """Multimodal key -> single-modality key, one rule per key of the single-modality model."""
    return KeyMap(tuple((multimodal_key(name, k), k) for k in single_keys))


def _other_modality(key: str, name: str, names: list[str]) -> Optional[str]:
    """The other modality `key` belongs to, or None."""
    for other in names:
        if other != name and any(key.startswith(p.format(other)) for p in PREFIXES.values()):
            return other
    return None


def _select_state(state: dict[str, Tensor], name: str, names: list[str], expected: dict[str, Tensor],
                  where: str, dropped: list[tuple[str, str]]) -> dict[str, Tensor]:
    kept = {}
    for key, tensor in state.items():
        other = _other_modality(key, name, names)
        if other is None:
            kept[key] = tensor
        else:
            dropped.append((key, f"modality {other!r}, not the selected {name!r}"))
    return map_state(kept, modality_keymap(name, list(expected)), expected, where)


def select_modality(imp: Imported, name: str, path: str | Path) -> Imported:
    """Modality `name` of the multimodal checkpoint `imp` (read from `path`), as a
    single-modality 2.0 checkpoint: config view, student and teacher states."""
    names = modality_names(imp.cfg.model)
    if name not in names:
        raise ValueError(f"{path}: the multimodal checkpoint has no modality {name!r}; it has {', '.join(names)}")
    cfg = modality_config(imp.cfg, name)
    model = build_model(cfg.model)
    dropped = list(imp.dropped)
    student = _select_state(imp.student, name, names, model.state_dict(), f"{path} (modality {name})", dropped)
    teacher = None
    if imp.teacher is not None:
        expected = model.make_teacher().module.state_dict()
        teacher = _select_state(imp.teacher, name, names, expected, f"{path} (teacher, modality {name})", [])
    return dataclasses.replace(imp, cfg=cfg, student=student, teacher=teacher,
                               source=f"{imp.source}, modality {name}", dropped=dropped)


def pick_modality(imp: Imported, modality: Optional[str], path: str | Path, kinds: tuple[str, ...] = ()) -> Imported:
    """`imp` itself (no `modality`), its modality `modality` (a multimodal checkpoint), or an
    error when a single-modality checkpoint is asked for another modality than its own.

    `kinds`: without `modality`, a multimodal checkpoint gives its one modality whose input is of
    one of these kinds (what a fine-tuning task reads); an error when none or several are.
    """
    if not modality and kinds and is_multimodal(imp.cfg.model):
        fits = [b.name for b in imp.cfg.model.input.branches if b.input.kind in kinds]
        if len(fits) != 1:
            raise ValueError(f"{path}: a multimodal checkpoint ({', '.join(modality_names(imp.cfg.model))}) with "
                             f"{len(fits)} modalities of input kind {' or '.join(kinds)}; choose one with modality=NAME")
        modality = fits[0]
    if not modality:
        return imp
    if is_multimodal(imp.cfg.model):
        return select_modality(imp, modality, path)
    kind = imp.cfg.model.input.kind
    if modality != kind:
        raise ValueError(f"{path}: a single-modality {kind!r} model has no modality {modality!r}")
    return imp


def require_one_modality(cfg: PretrainConfig, path: str | Path) -> None:
    """An error naming the choices when a verb that reads one modality gets a multimodal model."""
    if is_multimodal(cfg.model):
        raise ValueError(f"{path}: a multimodal checkpoint ({', '.join(modality_names(cfg.model))}); "
                         "choose one with --modality NAME")
