"""What data2vec 1.0 and 2.0 share: the EMA teacher's scope, its targets, the collapse guard,
unmasked feature extraction and BERT initialisation (reference sections 1.1, 2.2, 2.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from data2vec.algorithms.ema import EMATeacher
from data2vec.algorithms.targets import make_targets
from data2vec.config import ModelConfig
from data2vec.nn.encoder import EncoderOutput

@dataclass
class PretrainOutput:
    """loss: scalar to backpropagate; logs: detached 0-dim tensors (loss parts, collapse
    monitors) and plain floats; tensors stay on the device so a step needs no host sync."""

    loss: Tensor
    logs: dict[str, Tensor | float] = field(default_factory=dict)


class RepresentationCollapse(RuntimeError):
    """Raised by the collapse guard when target or prediction std falls below its threshold."""


def init_bert_params(module: nn.Module) -> None:
    """BERT-style init used by fairseq data2vec: N(0, 0.02) Linear/Embedding weights, zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()


def make_teacher(modality: nn.Module, encoder: nn.Module, cfg: ModelConfig) -> EMATeacher:
    """EMA copy of the parts named by `cfg.teacher.scope`; the rest stays shared with the student.

    The teacher's parameter names match the student's (`modality.*`, `encoder.*`).
    """
    scope = cfg.teacher.scope
    if scope == "blocks":
        return EMATeacher(nn.ModuleDict({"encoder": encoder}), cfg.teacher)
    parts = nn.ModuleDict({"modality": modality, "encoder": encoder})
    drop = ("modality.local_encoder",) if scope == "context" else ()
    return EMATeacher(parts, cfg.teacher, drop=drop)


@torch.no_grad()
def teacher_targets(
    modality: nn.Module, teacher: EMATeacher, cfg: ModelConfig, inputs: Tensor, feats: Tensor,
    padding_mask: Optional[Tensor],
) -> Tensor:
    """Targets from one teacher pass over the unmasked input.

    Args:
        modality: the student's modality encoder (used for the parts the teacher shares).
        inputs: raw input; feats: the student's unmasked local features (B, T, D).
        padding_mask: (B, T) bool, True = padding.
    Returns:
        (B, T, D) float32, extra tokens removed.

    The teacher runs in float32 even inside a bf16 autocast region (BEiT and fairseq keep the
    EMA teacher in fp32): targets are what the student regresses, so they get full precision.
    """
    with torch.autocast(feats.device.type, enabled=False):
        inputs = inputs.float() if inputs.is_floating_point() else inputs
        return _teacher_targets_fp32(modality, teacher, cfg, inputs, feats.detach().float(), padding_mask)


def _teacher_targets_fp32(
    modality: nn.Module, teacher: EMATeacher, cfg: ModelConfig, inputs: Tensor, feats: Tensor,
    padding_mask: Optional[Tensor],
) -> Tensor:
    t = teacher.module
    scope = cfg.teacher.scope
    if scope == "all":
        tf, tpad = t["modality"].local_features(inputs, padding_mask)
        ctx = t["modality"].contextualize(tf, tpad, None)
    elif scope == "context":
        ctx = t["modality"].contextualize(feats, padding_mask, None)
    else:
        ctx = modality.contextualize(feats, padding_mask, None)
    out = t["encoder"](ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias)
    E = modality.num_extra_tokens
    layers = out.layer_results if cfg.targets.layer == "ffn" else out.block_outputs
    return make_targets([h[:, E:] for h in layers], cfg.targets, padding_mask)


def check_collapse(cfg: ModelConfig, logs: dict[str, Tensor | float], step: int) -> None:
    """Stop with a clear message when target or prediction std falls below its threshold.

    Reads the device values (a host sync) only when a threshold is set."""
    if step < cfg.collapse_check_after:
        return
    if cfg.min_target_std > 0 and logs["target_std"] < cfg.min_target_std:
        raise RepresentationCollapse(
            f"step {step}: target std {logs['target_std']:.4f} < model.min_target_std={cfg.min_target_std}; "
            "the teacher's representations are collapsing (try a lower train.lr or a longer warm-up)"
        )
    if cfg.min_pred_std > 0 and logs["pred_std"] < cfg.min_pred_std:
        raise RepresentationCollapse(
            f"step {step}: prediction std {logs['pred_std']:.4f} < model.min_pred_std={cfg.min_pred_std}; "
            "the student's predictions are collapsing (try a lower train.lr or a longer warm-up)"
        )


def encode_unmasked(modality: nn.Module, encoder: nn.Module, inputs: Tensor,
                    padding_mask: Optional[Tensor] = None) -> EncoderOutput:
    """Encode every token (no masking). Returns outputs with extra tokens kept at the front."""
    feats, pad = modality.local_features(inputs, padding_mask)
    ctx = modality.contextualize(feats, pad, None)
    return encoder(ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias)
