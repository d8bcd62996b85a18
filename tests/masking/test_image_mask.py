import pytest
import torch

from data2vec.masking.common import exact_count, gather_tokens, make_mask_info, restore_tokens
from data2vec.masking.image import inverse_block_mask


@pytest.mark.parametrize("grid,p,adjust,expected_masked", [(14, 0.8, 0.07, 157), (14, 0.75, 0.1, 147), (7, 0.6, 0.1, 30)])
def test_inverse_block_mask_exact_counts(grid, p, adjust, expected_masked):
    g = torch.Generator().manual_seed(0)
    m = inverse_block_mask(32, grid, p, adjust, 3, True, g)
    assert m.dtype == torch.bool and m.shape == (32, grid * grid)
    assert (m.sum(1) == expected_masked).all()  # int(L * keep) visible, the rest masked


def test_inverse_block_mask_visible_patches_form_blobs():
    # Visible patches come in 3x3 blocks: most visible patches have a visible neighbour,
    # far more than for a uniform random mask of the same count.
    g = torch.Generator().manual_seed(1)
    m = inverse_block_mask(64, 14, 0.8, 0.07, 3, True, g).view(64, 14, 14)
    vis = (~m).float()
    nb = torch.zeros_like(vis)
    nb[:, 1:] += vis[:, :-1]
    nb[:, :-1] += vis[:, 1:]
    nb[:, :, 1:] += vis[:, :, :-1]
    nb[:, :, :-1] += vis[:, :, 1:]
    frac_block = ((nb > 0) & (vis > 0)).sum() / vis.sum()
    r = torch.rand(64, 196, generator=g).argsort(1) < 39
    rv = r.view(64, 14, 14).float()
    nb2 = torch.zeros_like(rv)
    nb2[:, 1:] += rv[:, :-1]
    nb2[:, :-1] += rv[:, 1:]
    nb2[:, :, 1:] += rv[:, :, :-1]
    nb2[:, :, :-1] += rv[:, :, 1:]
    frac_rand = ((nb2 > 0) & (rv > 0)).sum() / rv.sum()
    assert frac_block > 0.9 and frac_block > frac_rand + 0.2


def test_mask_is_reproducible_from_generator():
    a = inverse_block_mask(4, 14, 0.8, 0.07, 3, True, torch.Generator().manual_seed(5))
    b = inverse_block_mask(4, 14, 0.8, 0.07, 3, True, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_exact_count_keeps_existing_when_adding():
    m = torch.zeros(3, 10, dtype=torch.bool)
    m[:, :3] = True
    out = exact_count(m, 5, torch.Generator().manual_seed(0))
    assert (out.sum(1) == 5).all() and out[:, :3].all()
    out2 = exact_count(out, 2, torch.Generator().manual_seed(0))
    assert (out2.sum(1) == 2).all() and not (out2 & ~out).any()


def test_mask_info_gather_and_restore_round_trip():
    mask = torch.tensor([[True, False, True, False, False], [False, True, True, False, False]])
    info = make_mask_info(mask)
    x = torch.arange(10.0).view(2, 5, 1)
    vis = gather_tokens(x, info.ids_keep)
    assert vis[..., 0].tolist() == [[1, 3, 4], [5, 8, 9]]  # visible tokens in original order
    fill = torch.full((2, 2, 1), -1.0)
    back = restore_tokens(vis, fill, info)
    assert torch.equal(back[~mask], x[~mask]) and (back[mask] == -1).all()
    with pytest.raises(ValueError, match="equal counts"):
        make_mask_info(torch.tensor([[True, False], [False, False]]))
