"""Fine-tuning entry points: the backbone from `--init` (any format) or a preset, the task for
`cfg.task`, the model, the loop; and a fine-tuned model back from `finetuned.pt`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from data2vec.config import ModelConfig, PretrainConfig, check_choices
from data2vec.checkpoints.load import read_weights
from data2vec.heads.model import EncoderWithHead, FeatureMaskConfig
from data2vec.models import build_finetuned
from data2vec.train.distributed import distributed_run
from data2vec.train.finetune import Finetuner, finetune_config_of, read_finetuned
from data2vec.train.finetune_config import FinetuneConfig, FinetuneModelConfig

log = logging.getLogger("data2vec")

WEIGHTS = ("student", "teacher", "random")


def task_class(task: str) -> type:
    """The `FinetuneTask` class of `task` (each modality registers its tasks: `ModalitySpec.tasks`)."""
    from data2vec.modalities.registry import resolve, task_spec

    return resolve(task_spec(task).task)


def input_kinds(task: str) -> tuple[str, ...]:
    """The model input kinds `task` fine-tunes."""
    from data2vec.modalities.registry import task_spec

    return task_spec(task).input_kinds


def load_backbone(init: str, preset: str, weights: str = "student", modality: str = "",
                  kinds: tuple[str, ...] = ()) -> tuple[PretrainConfig, Optional[dict[str, Tensor]]]:
    """(pretraining config, student state dict or None) from `init` in any format the loaders
    read (our training checkpoint, our folder, a fairseq file, a transformers folder), or the
    random-weight architecture of `preset` when `init` is empty. `weights="teacher"` takes the
    EMA teacher's tensors where the checkpoint has them; `"random"` keeps only the architecture
    (and, for text, the tokenizer) of `init`: the from-scratch baseline. From a multimodal `init`
    it takes `modality`, or without one the modality whose input kind is in `kinds`."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if not init:
        from data2vec.presets import get_preset

        return get_preset(preset), None
    cfg, state, teacher = read_weights(init, modality=modality, kinds=kinds)  # any format, runs and their last.pt
    if weights == "random":
        return cfg, None
    if weights == "teacher" and teacher is None:
        raise ValueError(f"{init}: holds no EMA teacher weights; use weights=student")
    return cfg, {**state, **teacher} if weights == "teacher" else dict(state)


def finetune_model_config(model: ModelConfig, m: FinetuneModelConfig) -> ModelConfig:
    """The pretraining architecture with the fine-tuning regularization applied."""
    enc = dataclasses.replace(model.encoder, drop_path=m.drop_path, dropout=m.dropout,
                              activation_dropout=m.activation_dropout, layer_drop=m.layer_drop)
    return dataclasses.replace(model, encoder=enc)


def feature_mask(m: FinetuneModelConfig) -> Optional[FeatureMaskConfig]:
    if m.mask_prob <= 0 and m.mask_channel_prob <= 0:
        return None
    return FeatureMaskConfig(m.mask_prob, m.mask_length, m.mask_channel_prob, m.mask_channel_length)


def build_run(cfg: FinetuneConfig) -> tuple[PretrainConfig, EncoderWithHead, Any]:
    """(pretraining config, model, task) of a fine-tuning config: data read, head sized."""
    check_choices(cfg)
    cls = task_class(cfg.task)
    pre, state = load_backbone(cfg.init, cfg.preset, cfg.weights, cfg.modality, input_kinds(cfg.task))
    if pre.model.input.kind not in input_kinds(cfg.task):
        raise ValueError(f"task={cfg.task} needs a {' or '.join(input_kinds(cfg.task))} model; "
                         f"{cfg.init or cfg.preset} is a {pre.model.input.kind!r} model")
    task = cls(cfg, pre)
    torch.manual_seed(cfg.train.seed)
    model = build_finetuned(finetune_model_config(pre.model, cfg.model), task.head, state,
                            cfg.model.freeze_feature_extractor, feature_mask(cfg.model))
    return pre, model, task


def from_scratch(cfg: FinetuneConfig) -> bool:
    """Whether `cfg` starts from random weights (no `init`, or `weights=random`)."""
    return not cfg.init or cfg.weights == "random"


def scratch_policy(cfg: FinetuneConfig) -> FinetuneConfig:
    """`cfg` for a run from random weights: nothing random stays frozen.

    Recipes freeze the speech feature extractor and train only the head for the first updates
    because the backbone is pretrained; applied to random weights, both would handicap the
    from-scratch baseline by design (a random conv stack that never learns, updates spent on a
    head over random features). Pretrained runs keep the recipe as it is.
    """
    if not from_scratch(cfg) or (not cfg.model.freeze_feature_extractor and not cfg.train.freeze_backbone_steps):
        return cfg
    log.info("random weights: the feature extractor trains and the backbone is not frozen for the first updates "
             "(model.freeze_feature_extractor=false, train.freeze_backbone_steps=0)")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, freeze_feature_extractor=False),
                               train=dataclasses.replace(cfg.train, freeze_backbone_steps=0))


def run_finetune(cfg: FinetuneConfig, run_dir: str | Path, resume: bool = False, force: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Fine-tune per `cfg` into `run_dir` (or continue it with `resume=True`); returns the
    results written to `run_dir/results.json`. Runs from random weights follow `scratch_policy`."""
    cfg = scratch_policy(cfg)
    with distributed_run(cfg.train.device):  # one process, or one rank of a torchrun job
        pre, model, task = build_run(cfg)
        return Finetuner(cfg, pre, model, task, run_dir, resume=resume, force=force).train(progress)


def load_finetuned(path: str | Path, device: str = "cpu") -> tuple[EncoderWithHead, FinetuneConfig, PretrainConfig, list[str]]:
    """A model written by `run_finetune` (eval mode), its configs and output names."""
    ckpt = read_finetuned(path)
    cfg, pre, head = finetune_config_of(ckpt)
    model = build_finetuned(finetune_model_config(pre.model, cfg.model), head, None,
                            cfg.model.freeze_feature_extractor, feature_mask(cfg.model))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg, pre, list(ckpt["outputs"])
