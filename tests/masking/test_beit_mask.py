import math

import pytest
import torch

from data2vec.masking.image import beit_block_mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _components(grid: list[list[bool]]) -> list[list[tuple[int, int]]]:
    """4-connected components of the True cells, each as a list of (y, x)."""
    h, w = len(grid), len(grid[0])
    seen, comps = set(), []
    for y0 in range(h):
        for x0 in range(w):
            if not grid[y0][x0] or (y0, x0) in seen:
                continue
            stack, comp = [(y0, x0)], []
            seen.add((y0, x0))
            while stack:
                y, x = stack.pop()
                comp.append((y, x))
                for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                    if 0 <= ny < h and 0 <= nx < w and grid[ny][nx] and (ny, nx) not in seen:
                        seen.add((ny, nx))
                        stack.append((ny, nx))
            comps.append(comp)
    return comps


def test_shape_dtype_and_counts_on_the_data2vec_setting():
    m = beit_block_mask(200, 14, 14, 120, 16, None, 0.3, None, _gen(0))
    assert m.shape == (200, 196) and m.dtype == torch.bool
    counts = m.sum(1)
    assert int(counts.max()) <= 120  # never more than asked
    assert counts.float().mean() >= 110 and (counts == 120).float().mean() > 0.5


def test_non_square_grid_is_row_major():
    m = beit_block_mask(50, 4, 9, 12, 4, generator=_gen(0))
    assert m.shape == (50, 36) and int(m.sum(1).max()) <= 12
    # Blocks are rectangles in (4, 9) layout: within-row neighbours are far likelier masked
    # together than across the row wrap (x = 8 -> x = 0 of the next row).
    grid = m.view(50, 4, 9)
    along = (grid[:, :, 1:] & grid[:, :, :-1]).float().mean() / grid[:, :, :-1].float().mean()
    wrap = (grid[:, 1:, 0] & grid[:, :-1, 8]).float().mean() / grid[:, :-1, 8].float().mean()
    assert along > wrap + 0.2


def test_masked_set_is_a_few_large_blocks():
    m = beit_block_mask(200, 14, 14, 120, generator=_gen(1)).view(200, 14, 14).tolist()
    comps = [_components(g) for g in m]
    assert max(len(c) for c in comps) <= 8
    assert min(max(len(x) for x in c) for c in comps) >= 16  # the first block is >= ~min_num_patches
    smallest = sorted(min(len(x) for x in c) for c in comps)
    assert smallest[len(smallest) // 2] >= 16  # the median row is one big region
    # A uniform random mask of 120 / 196 almost always has isolated single patches; blocks rarely do.
    assert sum(s == 1 for s in smallest) < 0.1 * len(smallest)


def test_single_rectangles_have_varied_aspect_ratios():
    # One block's worth of patches on a large grid: rows are mostly a single rectangle.
    m = beit_block_mask(300, 20, 20, 16, 16, generator=_gen(2)).view(300, 20, 20).tolist()
    ratios = []
    for g in m:
        comps = _components(g)
        if len(comps) != 1:
            continue
        ys, xs = zip(*comps[0])
        bh, bw = max(ys) - min(ys) + 1, max(xs) - min(xs) + 1
        if bh * bw == len(comps[0]):  # a pure rectangle
            ratios.append(bh / bw)
    assert len(ratios) > 50
    assert min(ratios) < 0.5 and max(ratios) > 2.0  # log-aspect uniform in [log 0.3, log 3.33]
    assert min(ratios) >= 0.2 and max(ratios) <= 5.0
    assert abs(sum(math.log(r) for r in ratios) / len(ratios)) < 0.3  # symmetric in log space


def test_reproducible_with_the_generator():
    a = beit_block_mask(8, 14, 14, 120, generator=_gen(5))
    b = beit_block_mask(8, 14, 14, 120, generator=_gen(5))
    c = beit_block_mask(8, 14, 14, 120, generator=_gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_max_num_patches_caps_each_block():
    # 60 patches on a large grid: blocks of <= 8 patches rarely touch, so a row has >= 60 / 8
    # components; without the cap a few big blocks do it.
    capped = beit_block_mask(50, 40, 40, 60, 4, 8, generator=_gen(3)).view(50, 40, 40).tolist()
    free = beit_block_mask(50, 40, 40, 60, 4, generator=_gen(3)).view(50, 40, 40).tolist()
    assert sum(len(_components(g)) for g in capped) / 50 > 8
    assert sum(len(_components(g)) for g in free) / 50 < 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_num_patches"):
        beit_block_mask(1, 14, 14, 10, 16)
    with pytest.raises(ValueError, match="num_masking_patches"):
        beit_block_mask(1, 4, 4, 17, 4)
    with pytest.raises(ValueError, match="aspect"):
        beit_block_mask(1, 14, 14, 120, min_aspect=0.0)
