"""Text masks: data2vec 2.0 uniform random token masking (fairseq `random_masking`, length 1)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def num_masked(mask_prob: float, padding_mask: Optional[Tensor], length: int) -> int:
    """How many tokens every row masks: L - int(L * (1 - mask_prob)), L = the shortest real length.

    fairseq's `random_masking` keeps int(L * (1 - p)) tokens and masks the rest, so 512 tokens
    at 0.48 keep int(266.24) = 266 and mask 246 (one more than int(512 * 0.48) = 245).
    Dropping masked tokens needs the same count in every row, and padding is never masked,
    so the shortest row sets the count; longer rows get a little less than `mask_prob`.
    """
    shortest = length
    if padding_mask is not None and padding_mask.shape[0] > 0:
        shortest = int((~padding_mask).sum(1).min())
    return shortest - int(shortest * (1.0 - mask_prob))


def random_token_mask(
    batch: int,
    length: int,
    mask_prob: float,
    padding_mask: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Mask a uniform random subset of each row's real tokens, the same count in every row.

    Args:
        padding_mask: (batch, length) bool, True = padding; padding is never masked.
        generator: CPU generator (masks are reproducible per seed, step and micro-batch).
    Returns:
        (batch, length) bool, True = masked, `num_masked(...)` set per row.
    """
    if not 0.0 <= mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in [0, 1), got {mask_prob}")
    n = num_masked(mask_prob, padding_mask, length)
    scores = torch.rand(batch, length, generator=generator)
    if padding_mask is not None:
        # Padding scores below every real token's, so top-k never picks it (n <= real length).
        scores = scores.masked_fill(padding_mask.cpu(), -1.0)
    top = scores.topk(n, dim=1).indices
    return torch.zeros(batch, length, dtype=torch.bool).scatter_(1, top, True)


def mlm_span_mask(
    batch: int,
    length: int,
    mask_prob: float,
    span: int = 1,
    padding_mask: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """data2vec 1.0 text selection (fairseq `MaskTokensDataset`, `mask_multiple_length=span`).

    A row with sz real tokens draws int(mask_prob * sz / span + u), u ~ U[0, 1), distinct
    start positions among its real tokens; each start selects `span` consecutive real tokens,
    clipped at the row's end. Spans may overlap, so slightly less than `mask_prob` is selected,
    and counts differ per row (the 1.0 student keeps every token, so that is fine).

    Args:
        padding_mask: (batch, length) bool, True = padding; padding is never selected.
    Returns:
        (batch, length) bool, True = selected for masking.
    """
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    pad = torch.zeros(batch, length, dtype=torch.bool) if padding_mask is None else padding_mask.cpu()
    sz = (~pad).sum(1)  # (B,)
    # Probabilistic rounding as fairseq; num <= sz since mask_prob / span <= 1.
    num = (mask_prob * sz / span + torch.rand(batch, generator=generator)).long()
    # Real tokens first, in order: spans then run over consecutive *real* tokens whatever the padding layout.
    order = torch.argsort(pad.to(torch.int8), dim=1, stable=True)  # (B, T)
    # Starts without replacement: the `num` real tokens (compact index < sz) with the lowest scores.
    scores = torch.rand(batch, length, generator=generator)
    scores = scores.masked_fill(torch.arange(length)[None] >= sz[:, None], 2.0)
    rank = scores.argsort(1).argsort(1)
    starts = rank < num[:, None]  # (B, T) in compact order
    selected = starts.clone()
    for offset in range(1, min(span, length)):
        selected[:, offset:] |= starts[:, :-offset]
    selected &= torch.arange(length)[None] < sz[:, None]  # clip spans at the row's last real token
    return torch.zeros_like(selected).scatter_(1, order, selected)


def bert_corrupt(
    tokens: Tensor,
    selected: Tensor,
    mask_id: int,
    random_token_prob: float = 0.0,
    leave_unmasked_prob: float = 0.0,
    random_low: int = 4,
    random_high: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """BERT corruption of the `selected` positions (fairseq `MaskTokensDataset`).

    Each selected token independently stays unchanged (prob `leave_unmasked_prob`), becomes a
    uniform random id in [random_low, random_high) (prob `random_token_prob`; random_high
    defaults to mask_id, so specials 0..3 and <mask> are never drawn), else becomes mask_id.
    0.1 / 0.1 is BERT's 80/10/10; 0 / 0 (data2vec 1.0's released config) masks every selected token.

    Args:
        tokens: (B, T) long; selected: (B, T) bool, True = selected.
    Returns:
        corrupted (B, T) long, and mask_positions (B, T) bool: selected positions that now hold
        mask_id (data2vec 1.0 text computes its loss where the input is <mask>).
    """
    if random_token_prob < 0 or leave_unmasked_prob < 0 or random_token_prob + leave_unmasked_prob > 1:
        raise ValueError(
            f"need probabilities >= 0 summing to <= 1, got {random_token_prob} + {leave_unmasked_prob}"
        )
    random_high = mask_id if random_high is None else random_high
    if random_token_prob > 0 and random_low >= random_high:
        raise ValueError(f"empty random-token range [{random_low}, {random_high})")
    # One uniform per position splits the selected ones into unchanged | random | <mask>.
    u = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    sel = selected.to(tokens.device)
    to_random = sel & (u >= leave_unmasked_prob) & (u < leave_unmasked_prob + random_token_prob)
    to_mask = sel & (u >= leave_unmasked_prob + random_token_prob)
    out = tokens.masked_fill(to_mask, mask_id)
    if random_token_prob > 0:
        rand_ids = torch.randint(random_low, random_high, tokens.shape, generator=generator)
        out = torch.where(to_random, rand_ids.to(tokens.device, tokens.dtype), out)
    return out, sel & (out == mask_id)
