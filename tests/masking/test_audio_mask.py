import numpy as np
import pytest
import torch

from data2vec.masking.audio import block_mask_1d, block_starts, span_mask
from data2vec.masking.common import make_mask_info


def _padding(lengths, T):
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]


def test_block_mask_has_exact_equal_counts_and_never_touches_padding():
    lengths, T = [100, 73, 50, 99], 100
    pad = _padding(lengths, T)
    for seed in range(20):
        m = block_mask_1d(4, T, 0.5, 5, 0.05, pad, torch.Generator().manual_seed(seed))
        assert m.sum(1).tolist() == [25] * 4  # int(T_min * p) with T_min = 50
        assert not (m & pad).any()
        make_mask_info(m)  # equal counts: tokens can be dropped


def test_block_mask_without_padding_masks_int_T_p_in_blocks():
    m = block_mask_1d(8, 200, 0.5, 5, 0.05, None, torch.Generator().manual_seed(0))
    assert m.sum(1).tolist() == [100] * 8
    # Blocks, not scattered frames: far fewer runs than a uniform random mask would give.
    starts = (m[:, 1:] & ~m[:, :-1]).sum(1).float().mean()
    assert starts < 30


def test_mask_prob_adjust_only_adds_centres_before_the_exact_correction():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a, b = block_mask_1d(4, 300, 0.5, 5, 0.0, None, g()), block_mask_1d(4, 300, 0.5, 5, 0.2, None, g())
    assert a.sum() == b.sum() == 4 * 150 and not torch.equal(a, b)


def test_block_mask_is_deterministic_given_the_generator():
    pad = _padding([60, 40], 60)
    a = block_mask_1d(2, 60, 0.5, 5, 0.05, pad, torch.Generator().manual_seed(7))
    b = block_mask_1d(2, 60, 0.5, 5, 0.05, pad, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_block_mask_rejects_rows_without_frames():
    with pytest.raises(ValueError, match="no frames"):
        block_mask_1d(2, 10, 0.5, 5, 0.0, _padding([10, 0], 10))


def test_span_mask_never_on_padding_and_roughly_mask_prob():
    pad = _padding([400, 200], 400)
    m = span_mask(2, 400, 0.65, 10, pad, torch.Generator().manual_seed(0))
    assert not (m & pad).any()
    frac = m[0].float().mean().item()
    assert 0.35 < frac < 0.65  # overlapping spans cover about 1 - exp(-0.65)
    channels = span_mask(3, 64, 0.25, 8, None, torch.Generator().manual_seed(1))
    assert channels.shape == (3, 64) and channels.any(1).all()


def test_span_mask_same_count_trims_every_row_to_the_smallest_count():
    pad = torch.zeros(6, 300, dtype=torch.bool)
    pad[3:, 200:] = True
    g = torch.Generator().manual_seed(3)
    free = span_mask(6, 300, 0.65, 10, pad, torch.Generator().manual_seed(3))
    same = span_mask(6, 300, 0.65, 10, pad, g, same_count=True)
    counts = same.sum(1)
    assert (counts == counts[0]).all() and int(counts[0]) == int(free.sum(1).min())
    assert not (same & pad).any()
    assert not (same & ~free).any()  # a subset of the spans drawn, never new positions


def _fairseq_span_mask(sz: int, mask_prob: float, span: int, rng: np.random.Generator, min_masks: int = 1):
    """fairseq `compute_mask_indices` for one unpadded row (static lengths, overlap allowed,
    num_mask_ver=2, idc_select_ver=1), ported line by line."""
    num_mask = max(min_masks, int(mask_prob * sz / float(span) + rng.random()))
    min_len = span
    if sz - min_len <= num_mask:
        min_len = sz - num_mask - 1
    mask_idc = rng.choice(sz - min_len, num_mask, replace=False)
    mask_idc = np.asarray([mask_idc[j] + offset for j in range(len(mask_idc)) for offset in range(span)])
    mask = np.zeros(sz, dtype=bool)
    mask[np.unique(mask_idc[mask_idc < sz])] = True
    return mask


def test_span_mask_matches_fairseq_masked_fraction():
    # The 1.0 speech setting: p=0.65, span 10, T=500, batches of 8 trimmed to the smallest row count
    # (require_same_masks): fairseq masks about 0.449 (starts drawn with replacement over one
    # position too many gave about 0.435).
    rng = np.random.default_rng(0)
    rows = np.array([_fairseq_span_mask(500, 0.65, 10, rng).sum() for _ in range(2400)])
    ref_free, ref_same = rows.mean() / 500, rows.reshape(-1, 8).min(1).mean() / 500
    free = span_mask(2400, 500, 0.65, 10, None, torch.Generator().manual_seed(0)).float().mean().item()
    same = np.mean([span_mask(8, 500, 0.65, 10, None, torch.Generator().manual_seed(s), same_count=True)
                    .float().mean().item() for s in range(300)])
    assert abs(free - ref_free) < 0.003 and abs(same - ref_same) < 0.003 and abs(ref_same - 0.449) < 0.003


def test_span_mask_starts_are_distinct_and_leave_the_last_frames_alone():
    m = span_mask(2000, 100, 0.65, 10, None, torch.Generator().manual_seed(1))
    # Starts lie in [0, T - span), so a span ends at T - 2 at the latest: the last frame is never masked.
    assert not m[:, -1].any() and m[:, -2].any()
    # Distinct starts: one span per start, so count 6 or 7 spans never collapse to fewer runs than
    # the masked frames allow; the masked frames per row are at least `span` (min_masks=1).
    assert (m.sum(1) >= 10).all()


def test_span_mask_min_masks_one_masks_a_span_even_at_tiny_prob():
    m = span_mask(50, 200, 0.0, 10, None, torch.Generator().manual_seed(2))
    assert (m.sum(1) == 10).all()
    none = span_mask(50, 200, 0.0, 10, None, torch.Generator().manual_seed(2), min_masks=0)
    assert not none.any()


def test_span_mask_short_rows_use_num_plus_one_start_positions():
    # T=12, span 10, p=0.65: num = 1 (0.78 + u), T - span = 2 > 1, starts in {0, 1}.
    m = span_mask(500, 12, 0.65, 10, None, torch.Generator().manual_seed(3))
    assert set(m.sum(1).tolist()) <= {10, 20} and m.sum(1).min() == 10
    assert not m[:, -1].any()


def test_even_block_centring_matches_fairseq_offsets():
    # fairseq compute_block_mask_1d sets centre + (i - mask_length // 2), i < mask_length.
    assert (block_starts(torch.tensor([10]), 4) + torch.arange(4)).tolist() == [8, 9, 10, 11]
    assert (block_starts(torch.tensor([10]), 5) + torch.arange(5)).tolist() == [8, 9, 10, 11, 12]
    # One centre of 4 frames, and a target of exactly 4: the mask is that block.
    for seed in range(10):
        centre = int(torch.rand(1, 1, generator=torch.Generator().manual_seed(seed)).item() * 40)
        m = block_mask_1d(1, 40, 0.1, 4, 0.0, None, torch.Generator().manual_seed(seed))
        if 2 <= centre <= 38:
            assert m[0].nonzero().flatten().tolist() == list(range(centre - 2, centre + 2))
