"""Frozen features of any data2vec model: a choice of layer and of pooling.

Layers: "last" (the encoder output), "block:N" (block N's output, 1-based), "input" (what
block 1 reads: the local features after the modality's positional encoding) or "top:K" / "top"
(the average of the top K blocks' normalized outputs: the data2vec target representation,
computed by the same `make_targets` as the teacher's targets; "top" uses the model's own
`targets.top_k`). Pooled top-K features normalize each block per token (layer norm) instead of
per channel over the tokens (instance norm): instance norm removes exactly each channel's mean
over the tokens, so mean-pooling the instance-normed targets gives zeros (or, after a final layer
norm, what little that puts back). Pooling "none" returns the targets exactly. Poolings: "mean" over real tokens (no extra tokens, no padding), "cls" (the
extra CLS token), "mean+cls" (both concatenated), "grid+cls" (models whose tokens form a square
grid, images: the tokens average-pooled to a 2x2 grid, then CLS; 5 x D features) or "none" (one
row per real token). "grid+cls" is the default for images: keeping where in the image things are
is worth 2-3 points of linear probe over "mean+cls" on Fashion-MNIST (docs/benchmarks-payoff.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data2vec.algorithms.targets import make_targets
from data2vec.config import ModelConfig, TargetConfig

POOLINGS = ("mean", "cls", "mean+cls", "grid+cls", "none")


@dataclass(frozen=True)
class FeatureSpec:
    """Which representation to read out: `layer` ("last", "block:N", "input", "top:K", "top") and
    `pooling` (one of POOLINGS)."""

    layer: str = "last"
    pooling: str = "mean"


def token_grid(model: nn.Module) -> int:
    """Tokens per side when a model's tokens form a square grid (image patches), else 0."""
    return int(model.modality.grid)


def default_pooling(model: nn.Module) -> str:
    """The 2x2 grid and CLS for models with a token grid and a CLS token (images), CLS and mean
    for other models with a CLS token, else the mean."""
    if model.modality.num_extra_tokens > 0:
        return "grid+cls" if token_grid(model) else "mean+cls"
    return "mean"


def parse_layer(layer: str, cfg: ModelConfig) -> tuple[str, int]:
    """("last", 0), ("input", 0), ("block", N) or ("top", K) for a layer spec, checked against `cfg`."""
    depth = cfg.encoder.depth
    name, _, arg = layer.partition(":")
    if name == "last" and not arg:
        return "last", 0
    if name == "input" and not arg:
        return "input", 0
    if name == "top" and not arg:
        return "top", cfg.targets.top_k
    if name in ("block", "top") and arg.isdigit() and 1 <= int(arg) <= depth:
        return name, int(arg)
    raise ValueError(f"layer={layer!r}: expected 'last', 'block:N' or 'top:K' with 1 <= N, K <= {depth} "
                     "(the encoder's depth), 'input' or 'top' (the model's targets.top_k)")


def pooled_targets(targets: TargetConfig) -> TargetConfig:
    """The target normalization made fit for pooling: per-token layer norm of each block
    instead of instance norm over the tokens (which zeroes every channel's token mean)."""
    return dataclasses.replace(targets, instance_norm_layers=False, layer_norm_layers=True, instance_norm_final=False)


def token_features(model: nn.Module, cfg: ModelConfig, inputs: Tensor, padding_mask: Optional[Tensor],
                   layer: str = "last", pooled: bool = False) -> tuple[Tensor, Optional[Tensor], int]:
    """Encode every token (nothing masked) and read out `layer` (`pooled`: for a pooling other
    than "none", which changes how "top:K" normalizes; see the module docstring).

    Returns (x, pad, E): x (B, E + T, D) with the E extra tokens in front for "last",
    "block:N" and "input", (B, T, D) float32 with E = 0 for "top:K" (targets carry no extra tokens); pad
    (B, E + T) / (B, T) bool, True = padding, or None.
    """
    kind, n = parse_layer(layer, cfg)
    modality, extra = model.modality, model.modality.num_extra_tokens
    feats, pad = modality.local_features(inputs, padding_mask)
    ctx = modality.contextualize(feats, pad, None)
    if kind == "input":
        return ctx.x, ctx.padding_mask, extra
    out = model.encoder(ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias)
    if kind == "last":
        return out.x, ctx.padding_mask, extra
    if kind == "block":
        return out.block_outputs[n - 1], ctx.padding_mask, extra
    layers = out.layer_results if cfg.targets.layer == "ffn" else out.block_outputs
    targets = dataclasses.replace(pooled_targets(cfg.targets) if pooled else cfg.targets, top_k=n)
    real_pad = ctx.padding_mask[:, extra:] if ctx.padding_mask is not None else None
    return make_targets([h[:, extra:] for h in layers], targets, real_pad), real_pad, 0


def pool_tokens(x: Tensor, pad: Optional[Tensor], num_extra: int, pooling: str, grid: int = 0) -> Tensor | list[Tensor]:
    """x: (B, E + T, D) -> (B, F) for "mean" (real tokens), "cls", "mean+cls", "grid+cls" (T =
    grid * grid tokens, F = 5 D); for "none" a list of B tensors (T_b, D), the real tokens of each row."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    tokens = x[:, num_extra:]
    if pooling == "grid+cls":
        if grid < 2 or tokens.shape[1] != grid * grid or pad is not None and bool(pad.any()):
            raise ValueError(f"pooling='grid+cls' needs a square grid of tokens (images); this model has {tokens.shape[1]} "
                             "tokens per input: use 'mean+cls' or 'mean'")
        cells = F.adaptive_avg_pool2d(tokens.transpose(1, 2).reshape(len(x), -1, grid, grid), 2).flatten(1)
        return torch.cat([cells, pool_tokens(x, pad, num_extra, "cls")], dim=1)
    keep = torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device) if pad is None else ~pad[:, num_extra:]
    if pooling == "none":
        return [t[k] for t, k in zip(tokens, keep)]
    w = keep.unsqueeze(-1).to(tokens.dtype)
    mean = (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)
    if pooling == "mean":
        return mean
    if num_extra < 1:
        raise ValueError(f"pooling={pooling!r} needs a CLS token; this model (or layer) has none: use 'mean'")
    cls = x[:, num_extra - 1]
    return cls if pooling == "cls" else torch.cat([mean, cls], dim=1)


@torch.no_grad()
def embed_batch(model: nn.Module, cfg: ModelConfig, inputs: Tensor, padding_mask: Optional[Tensor],
                spec: FeatureSpec) -> Tensor | list[Tensor]:
    """Features of one batch per `spec`, float32 on the model's device (see `pool_tokens`)."""
    x, pad, extra = token_features(model, cfg, inputs, padding_mask, spec.layer, pooled=spec.pooling != "none")
    return pool_tokens(x.float(), pad, extra, spec.pooling, token_grid(model))
