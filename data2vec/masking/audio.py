"""Audio masks: data2vec 2.0 1-D block masking (fairseq `compute_block_mask_1d`) with padding.

Padding rule: a batch of variable-length utterances masks exactly
`int(T_min * mask_prob)` frames in *every* row, where T_min is the shortest real length in
the batch. Blocks are drawn only inside each row's real frames and padding is never masked,
so every row keeps the same number of tokens (the student drops masked tokens) and padding
is never counted as visible content that was masked. Longer rows therefore get a slightly
lower masked fraction; length-bucketed batches keep the difference small.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def real_lengths(batch: int, length: int, padding_mask: Optional[Tensor]) -> Tensor:
    """(B,) number of real (non-padding) frames per row; padding_mask (B, T), True = padding."""
    if padding_mask is None:
        return torch.full((batch,), length, dtype=torch.long)
    return (~padding_mask.cpu()).sum(1).long()


def block_mask_1d(
    batch: int,
    length: int,
    mask_prob: float,
    mask_length: int = 5,
    mask_prob_adjust: float = 0.0,
    padding_mask: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Block mask with exactly `int(T_min * mask_prob)` masked frames per row, never on padding.

    Each row draws `int(T_b * (mask_prob + mask_prob_adjust) / mask_length)` block centres
    uniformly (with replacement) among its T_b real frames; each sets `mask_length` frames
    from `centre - mask_length // 2` (see `block_starts`), clamped to the real frames. Random frames are then added or removed
    (uniformly, among real frames only) until the exact count is reached, like fairseq's
    `require_same_masks` correction. `mask_prob_adjust` only inflates the number of centres to
    make up for overlaps.

    Args:
        padding_mask: (B, T) bool, True = padding.
    Returns:
        (B, T) bool, True = masked.
    """
    lens = real_lengths(batch, length, padding_mask)  # (B,)
    if batch == 0 or length == 0:
        return torch.zeros(batch, length, dtype=torch.bool)
    if int(lens.min()) < 1:
        raise ValueError("cannot mask a batch holding an utterance with no frames (too short for the conv stack)")
    target = int(int(lens.min()) * mask_prob)
    n_centres = (lens.double() * (mask_prob + mask_prob_adjust) / mask_length).long()  # (B,)
    centres = (torch.rand(batch, int(n_centres.max()), generator=generator) * lens[:, None]).long()  # (B, n)
    hits = set_spans(block_starts(centres, mask_length), n_centres, mask_length, lens, length)
    valid = torch.arange(length)[None, :] < lens[:, None]  # (B, T)
    return exact_count_within(hits, valid, target, generator)


def block_starts(centres: Tensor, mask_length: int) -> Tensor:
    """First frame of the block around each centre: fairseq's offsets `i - mask_length // 2`,
    i < mask_length, so an even block reaches one frame further left than right (4: -2..+1)."""
    return centres - mask_length // 2


def exact_count_within(mask: Tensor, valid: Tensor, target: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Set exactly `target` positions per row of `mask` (B, T), choosing only where `valid`.

    Already-set positions are kept in preference; the rest are drawn uniformly at random.
    `target` must not exceed any row's count of valid positions.
    """
    scores = torch.rand(mask.shape, generator=generator) + mask.float()
    scores = scores.masked_fill(~valid, -1.0)  # below every valid score, so never chosen
    top = scores.topk(target, dim=1).indices
    return torch.zeros_like(mask).scatter_(1, top, True)


def set_spans(starts: Tensor, counts: Tensor, span: int, lens: Tensor, length: int) -> Tensor:
    """Set `span` frames from each of the first `counts[b]` starts of row b, clamped to [0, lens[b]).

    Args:
        starts: (B, n) long; counts: (B,) how many starts each row uses; lens: (B,) real lengths.
    Returns:
        (B, length) bool.
    """
    B, n = starts.shape
    idx = starts[:, :, None] + torch.arange(span)  # (B, n, span)
    idx = torch.minimum(idx.clamp_min(0), (lens - 1).clamp_min(0)[:, None, None])
    used = (torch.arange(n)[None, :] < counts[:, None])[:, :, None].expand_as(idx)
    hits = torch.zeros(B, length, dtype=torch.long)
    hits.scatter_add_(1, idx.reshape(B, -1), used.reshape(B, -1).long())
    return hits > 0


def span_mask(
    batch: int,
    length: int,
    mask_prob: float,
    span: int,
    padding_mask: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    same_count: bool = False,
    min_masks: int = 1,
) -> Tensor:
    """wav2vec 2.0 span mask (fairseq `compute_mask_indices`, static lengths, overlap allowed).

    Row b draws `num = max(min_masks, int(mask_prob * T_b / span + u))`, u ~ U[0, 1), *distinct*
    span starts among the first `T_b - span` frames (`num + 1` when that is too few, as fairseq);
    each span covers `span` frames, clipped at the row's end. Spans may overlap, so fewer than
    `mask_prob * T_b` frames end up masked (T=500, p=0.65, span 10: about 0.449). Counts differ
    per row unless `same_count`, which keeps a random subset of the smallest row count in every
    row (fairseq `require_same_masks`, used by data2vec 1.0 speech pretraining).

    `min_masks`: 1 for data2vec 1.0 time masks (pretraining and fine-tuning), 0 for fairseq's
    channel masks. Returns (B, T) bool, True = masked; never on padding.
    """
    lens = real_lengths(batch, length, padding_mask)  # (B,)
    if batch == 0 or length == 0:
        return torch.zeros(batch, length, dtype=torch.bool)
    span = max(1, min(span, int(lens.min())))
    counts = (mask_prob * lens / span + torch.rand(batch, generator=generator)).long().clamp_min(min_masks)  # (B,)
    room = lens - span
    room = torch.where(room <= counts, counts + 1, room)  # fairseq: min_len = sz - num - 1
    width = max(int(room.max()), length)
    scores = torch.rand(batch, width, generator=generator).masked_fill(torch.arange(width) >= room[:, None], 2.0)
    starts = scores.argsort(1).argsort(1) < counts[:, None]  # (B, width): `counts[b]` distinct starts
    hits = starts.clone()
    for offset in range(1, span):
        hits[:, offset:] |= starts[:, :-offset]
    mask = hits[:, :length] & (torch.arange(length)[None] < lens[:, None])  # fairseq drops idx >= sz
    if same_count:
        mask = exact_count_within(mask, mask, int(mask.sum(1).min()), generator)
    return mask
