"""Optimizer construction."""

from __future__ import annotations

import torch
from torch import nn

from data2vec.config import TrainConfig


def modality_exempt(model: nn.Module) -> frozenset[str]:
    """Full names of the parameters the modalities in `model` exempt from weight decay
    (`Modality.no_weight_decay`)."""
    from data2vec.modalities.base import Modality

    return frozenset(f"{prefix}.{n}" if prefix else n for prefix, m in model.named_modules()
                     if isinstance(m, Modality) for n in m.no_weight_decay)


def no_weight_decay(name: str, param: nn.Parameter, exempt: frozenset[str] = frozenset()) -> bool:
    """Biases, norms and other 1-D parameters get no weight decay (fairseq data2vec rule), nor
    do the parameters in `exempt` (`modality_exempt`)."""
    return param.ndim <= 1 or name.endswith(".bias") or name in exempt


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """Two AdamW groups: decayed and not. `decay_all` decays every trainable parameter."""
    decay, no_decay = [], []
    exempt = modality_exempt(model)
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if not decay_all and no_weight_decay(name, p, exempt) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the fused kernel when every parameter is a plain CPU or CUDA tensor (not
    FSDP-sharded): one pass over all tensors instead of PyTorch's per-parameter loop on CPU."""
    params = list(model.parameters())
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and not hasattr(p, "full_tensor") for p in params)
    groups = param_groups(model, cfg.weight_decay, cfg.decay_all_params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None)
