"""Mask bookkeeping shared by every modality.

Convention (used everywhere in the package): a mask is a bool tensor (B, T) with
True = masked (hidden from the student), False = visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MaskInfo:
    """mask: (B, T) bool, True = masked; ids_keep: (B, T_keep) visible positions in order;
    ids_restore: (B, T) index that puts [visible..., masked...] back in original order."""

    mask: Tensor
    ids_keep: Tensor
    ids_restore: Tensor

    @property
    def num_keep(self) -> int:
        return self.ids_keep.shape[1]


def make_mask_info(mask: Tensor) -> MaskInfo:
    """Index tensors for dropping masked tokens; every row must mask the same count.

    The stable sort keeps visible tokens (and masked ones) in their original order.
    """
    counts = mask.sum(1)
    if mask.shape[0] and not bool((counts == counts[0]).all()):
        raise ValueError(f"masks must have equal counts per sample to drop tokens, got {counts.tolist()}")
    ids_shuffle = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    num_keep = mask.shape[1] - int(counts[0]) if mask.shape[0] else mask.shape[1]
    return MaskInfo(mask, ids_shuffle[:, :num_keep], ids_restore)


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """x: (B, T, ...) -> (B, len(ids[b]), ...) selecting positions `ids` (B, N) per row."""
    index = ids.reshape(ids.shape + (1,) * (x.ndim - 2)).expand(ids.shape + x.shape[2:])
    return torch.gather(x, 1, index)


def restore_tokens(visible: Tensor, fill: Tensor, info: MaskInfo) -> Tensor:
    """Put visible (B, T_keep, D) and fill (B, T - T_keep, D) tokens back in original order."""
    return gather_tokens(torch.cat([visible, fill], dim=1), info.ids_restore)


def exact_count(mask: Tensor, target: int, generator: torch.Generator | None = None) -> Tensor:
    """Add or remove random positions so every row of `mask` (B, T) has exactly `target` set.

    Set positions are kept in preference: a row with too many loses a uniform random subset,
    a row with too few gains a uniform random subset of the unset positions (as fairseq's
    multinomial correction does).
    """
    scores = torch.rand(mask.shape, generator=generator, device=mask.device) + mask.float()
    top = scores.topk(target, dim=1).indices
    return torch.zeros_like(mask).scatter_(1, top, True)
