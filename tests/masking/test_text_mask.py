import pytest
import torch

from data2vec.masking.common import make_mask_info
from data2vec.masking.text import num_masked, random_token_mask


def test_full_rows_mask_48_percent_like_fairseq():
    # 512 tokens at 0.48: fairseq keeps int(512 * 0.52) = 266 and masks 246 (not int(512 * .48) = 245).
    mask = random_token_mask(4, 512, 0.48, None, torch.Generator().manual_seed(0))
    assert mask.shape == (4, 512) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [246] * 4
    for L, p in [(512, 0.5), (128, 0.48), (100, 0.15), (7, 0.3)]:
        assert num_masked(p, None, L) == L - int(L * (1 - p))


def test_equal_counts_never_on_padding_and_set_by_the_shortest_row():
    pad = torch.zeros(3, 20, dtype=torch.bool)
    pad[1, 10:] = True  # 10 real tokens
    pad[2, 15:] = True  # 15 real tokens
    assert num_masked(0.5, pad, 20) == 5
    for seed in range(20):
        mask = random_token_mask(3, 20, 0.5, pad, torch.Generator().manual_seed(seed))
        assert mask.sum(1).tolist() == [5, 5, 5]
        assert not (mask & pad).any()
    make_mask_info(mask)  # equal counts: tokens can be dropped


def test_every_real_position_gets_masked_sometimes_and_masks_are_reproducible():
    pad = torch.zeros(1, 10, dtype=torch.bool)
    pad[0, 8:] = True
    hits = sum(random_token_mask(1, 10, 0.5, pad, torch.Generator().manual_seed(s)).int() for s in range(200))
    assert (hits[0, :8] > 50).all() and (hits[0, 8:] == 0).all()
    a = random_token_mask(2, 30, 0.48, None, torch.Generator().manual_seed(3))
    b = random_token_mask(2, 30, 0.48, None, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_bad_mask_prob():
    with pytest.raises(ValueError, match="mask_prob"):
        random_token_mask(1, 10, 1.0)
