"""One loader for weights in every supported format.

`load_model(path)` gives a ready model; `read_checkpoint(path)` the states in our layout (what
`convert`, `inspect` and `pretrain --init` need). Formats, detected by content:

- "run": a pretraining run folder, or its `checkpoints/last.pt` (a `data2vec-train-checkpoint`);
- "ours": our safetensors folder (`config.json` without `model_type`, `model.safetensors`);
- "fairseq": a torch file from Meta: fairseq `.pt` (data2vec 1.0 / 2.0, pretrained or
  fine-tuned) or a BEiT-repository `.pth`;
- "hf": a Hugging Face transformers Data2Vec* folder (`config.json` with a `model_type`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor, nn

from data2vec.checkpoints.fairseq_v1 import import_checkpoint
from data2vec.checkpoints.huggingface import OUR_KIND, PRESET, import_hf
from data2vec.checkpoints.imported import Imported
from data2vec.checkpoints.multimodal import pick_modality
from data2vec.checkpoints.pretrained import CONFIG_FILE, from_pretrained, load_strict, read_head
from data2vec.checkpoints.unpickle import CheckpointReadError, load_checkpoint
from data2vec.config import ConfigError, PretrainConfig, from_dict
from data2vec.heads.finetuned import HeadConfig
from data2vec.models import build_model
from data2vec.presets import get_preset

FORMATS = ("run", "ours", "fairseq", "hf")
RUN_CHECKPOINT = "checkpoints/last.pt"  # inside a run folder
RUN_EXPORT = "export"  # our safetensors folder a finished (or stopped) run writes
TRAIN_FORMAT = "data2vec-train-checkpoint"  # the "format" entry of a run's last.pt
WEIGHTS = ("student", "teacher")


class LoadedModel(NamedTuple):
    """What `load_model` returns: the model (eval mode), its config and, for a fine-tuned
    model, its head config (None for pretraining weights)."""

    model: nn.Module
    cfg: PretrainConfig
    head: Optional[HeadConfig]


def load_model(path: str | Path, weights: str = "student", source: Optional[str] = None,
               device: Optional[str | torch.device] = None, modality: Optional[str] = None) -> LoadedModel:
    """The model stored at `path` in any format of `FORMATS` (detected from the content, or
    forced with `source`), with its student or EMA `teacher` weights, in eval mode.

    Pretraining weights give the pretraining model (`build_model(cfg.model)`); fine-tuned ones
    an `EncoderWithHead` with `head` set. The teacher keeps the student's tensors where it has
    none of its own (the pretraining decoder; a frozen local encoder). `modality` selects one
    modality of a multimodal checkpoint (see `read_checkpoint`).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    imp = read_checkpoint(path, source, modality=modality)
    model = build_model(imp.cfg.model, imp.head)
    load_strict(model, imp.student, Path(path))
    if weights == "teacher":
        if imp.teacher is None:
            raise ValueError(f"{path}: has no EMA teacher weights ({imp.source}); use weights='student'")
        own = model.state_dict()
        unknown = sorted(set(imp.teacher) - set(own))
        if unknown:
            raise KeyError(f"{path}: teacher key(s) without a student counterpart: {unknown[:5]}")
        load_strict(model, {**own, **imp.teacher}, Path(path))
    model.eval()
    return LoadedModel(model.to(device) if device is not None else model, imp.cfg, imp.head)


def detect_format(path: str | Path) -> str:
    """The format of `path` (one of `FORMATS`), from its content. A file is read to tell a
    run's `last.pt` from Meta's files (see `sniff` to keep what was read)."""
    return sniff(path)[0]


def sniff(path: str | Path) -> tuple[str, Optional[dict[str, Any]]]:
    """(format, the file's contents for a file, None for a folder)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / RUN_CHECKPOINT).is_file():
            return "run", None
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path}: not a checkpoint folder (expected {RUN_CHECKPOINT} of a run, or "
                                    f"{CONFIG_FILE} of our or a transformers folder)")
        try:
            config = json.loads((path / CONFIG_FILE).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path / CONFIG_FILE}: not readable JSON: {e}") from e
        return ("hf" if isinstance(config, dict) and "model_type" in config else "ours"), None
    ckpt = load_checkpoint(path)
    return ("run" if ckpt.get("format") == TRAIN_FORMAT else "fairseq"), ckpt


def read_checkpoint(path: str | Path, source: Optional[str] = None, num_heads: Optional[int] = None,
                    ckpt: Optional[dict[str, Any]] = None, modality: Optional[str] = None,
                    kinds: tuple[str, ...] = ()) -> Imported:
    """Everything a checkpoint holds, in our layout: config, student (or fine-tuned model)
    state, EMA teacher state, head config (fine-tuned files) and the keys left out, with why.

    `source` forces a format of `FORMATS` (default: detected). `num_heads` cross-checks the
    head count of BEiT files (which store no config). `ckpt`: the file's contents, when the
    caller has read them already. Every state is checked key by key and shape by shape
    against the module it loads into. `modality` gives one modality of a multimodal checkpoint
    as a single-modality one (an error when it has no such modality; for a single-modality
    checkpoint it must name its own; `kinds`: see `checkpoints.multimodal.pick_modality`).
    """
    return pick_modality(_read_any(Path(path), source, num_heads, ckpt), modality, path, kinds)


def _read_any(path: Path, source: Optional[str], num_heads: Optional[int], ckpt: Optional[dict[str, Any]]) -> Imported:
    if source is not None and source not in FORMATS:
        raise ValueError(f"{path}: unknown checkpoint format {source!r}; expected one of {FORMATS}")
    if source is None:
        source, read = sniff(path)
        ckpt = ckpt if ckpt is not None else read
    if source == "run":
        return _read_run(path, ckpt)
    if source == "fairseq":
        if path.is_dir():
            raise ValueError(f"{path}: a folder, but --from fairseq expects a fairseq .pt or BEiT .pth file")
        ckpt = ckpt if ckpt is not None else load_checkpoint(path)
        if ckpt.get("format") == TRAIN_FORMAT:
            raise ValueError(f"{path}: a data2vec training checkpoint, not a fairseq/BEiT file; use --from run")
        return import_checkpoint(path, num_heads=num_heads, ckpt=ckpt)
    if source == "ours":
        model, cfg, teacher = from_pretrained(path)  # a full load validates keys and shapes
        return Imported(cfg, model.state_dict(), teacher, read_head(path), "data2vec checkpoint folder")
    return _read_hf(path)


def read_weights(
    path: str | Path, source: Optional[str] = None, modality: Optional[str] = None, kinds: tuple[str, ...] = ()
) -> tuple[PretrainConfig, dict[str, Tensor], Optional[dict[str, Tensor]]]:
    """(config, student state dict, EMA teacher module state dict or None) of a pretraining
    checkpoint at `path` (see `read_checkpoint`).

    The student state loads into `build_model(config.model)`, the teacher state into
    `model.make_teacher().module`. A fine-tuned checkpoint is an error (it has no pretraining
    head); use `read_checkpoint` for those. `modality`, `kinds`: one modality of a multimodal
    checkpoint (see `read_checkpoint`).
    """
    imp = read_checkpoint(path, source, modality=modality, kinds=kinds)
    if imp.head is not None:
        raise ValueError(f"{path}: a fine-tuned model ({imp.head.kind} head, {imp.head.num_outputs} outputs) has no "
                         "pretraining head or teacher; continued pretraining needs a pretraining checkpoint")
    return imp.cfg, imp.student, imp.teacher


def _read_run(path: Path, ckpt: Optional[dict[str, Any]]) -> Imported:
    """A run folder or its last.pt: the config, student and EMA teacher of the last step."""
    file = path / RUN_CHECKPOINT if path.is_dir() else path
    if ckpt is None:
        if not file.is_file():
            raise FileNotFoundError(f"{path}: not a run folder or training checkpoint ({RUN_CHECKPOINT} is missing)")
        ckpt = load_checkpoint(file)
    if ckpt.get("format") != TRAIN_FORMAT:
        raise CheckpointReadError(f"{file}: not a data2vec training checkpoint (expected 'format': {TRAIN_FORMAT!r})")
    try:
        cfg = from_dict(PretrainConfig, ckpt["config"])
        student, teacher = ckpt["model"], ckpt["teacher"]["module"]
    except (KeyError, TypeError) as e:
        raise CheckpointReadError(f"{file}: training checkpoint without its {e} entry") from None
    except ConfigError as e:
        raise ConfigError(f"{file}: {e}") from None
    model = build_model(cfg.model)
    load_strict(model, student, file)
    load_strict(model.make_teacher().module, teacher, file)
    return Imported(cfg, student, teacher, None, "data2vec training checkpoint")


def _read_hf(path: Path) -> Imported:
    """A transformers folder as a data2vec 1.0 checkpoint; data and training settings come from
    the matching released-architecture preset."""
    dropped: dict[str, str] = {}
    model_cfg, head, state = import_hf(path, dropped=dropped)
    cfg = dataclasses.replace(get_preset(PRESET[OUR_KIND[model_cfg.input.kind]]), model=model_cfg)
    channels = getattr(model_cfg.input, "in_chans", None)
    if channels is not None and len(getattr(cfg.data, "mean", ())) != channels:
        # transformers' BEiT image processor normalizes every channel with mean 0.5, std 0.5.
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, mean=(0.5,) * channels, std=(0.5,) * channels))
    return Imported(cfg, state, None, head, "Hugging Face transformers folder", sorted(dropped.items()))
