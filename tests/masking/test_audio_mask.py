import pytest
import torch

from data2vec.masking.audio import block_mask_1d, span_mask
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
