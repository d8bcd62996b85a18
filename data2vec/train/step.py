"""Step pieces both training loops call (pretraining and fine-tuning): backward with gradient
accumulation, gradient clipping, the non-finite check, the optimizer step and the learning rate
of every parameter group (mixed precision: `train.precision`).

A loop reads, per update: `set_lr` -> for each micro-batch `with autocast(...)`: forward, loss,
`backward(loss, grad_accum)` -> `clip_gradients` -> a non-finite check -> `optimizer_step`.
Pretraining defers its non-finite check to logging steps (no host sync per step); fine-tuning
checks every step (`clip_and_step`).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor


def backward(loss: Tensor, grad_accum: int) -> None:
    """Backward of one micro-batch's loss, scaled so `grad_accum` micro-batches sum to a mean."""
    (loss / grad_accum).backward()


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to `lr` times its `lr_scale` (layer-wise lr decay; 1 when absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def clip_gradients(params: Iterable[Tensor], clip_norm: float) -> Tensor:
    """Clip the gradients of `params` to total norm `clip_norm` (0: measure only). Returns the
    norm before clipping as a device tensor (no host sync)."""
    params = [p for p in params if p.grad is not None]
    return torch.nn.utils.clip_grad_norm_(params, clip_norm if clip_norm > 0 else math.inf)


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def check_finite(grad_norm: Tensor, step: int, setting: str = "train.lr") -> float:
    """The gradient norm as a float; FloatingPointError naming the step when it is not finite."""
    value = float(grad_norm)
    if not math.isfinite(value):
        raise FloatingPointError(f"step {step}: the gradient norm is {value}; try a lower {setting}")
    return value


def clip_and_step(params: Iterable[Tensor], optimizer: torch.optim.Optimizer, clip_norm: float, step: int) -> float:
    """Clip, check, step and zero the gradients; returns the norm before clipping. A non-finite
    norm raises before the step, so the weights are left unchanged."""
    try:
        norm = check_finite(clip_gradients(params, clip_norm), step)
    except FloatingPointError:
        optimizer.zero_grad(set_to_none=True)
        raise
    optimizer_step(optimizer)
    return norm
