import pytest
import torch

from data2vec.nn.relpos import RelativePositionBias, num_relative_distance, relative_position_index


def _brute_force(grid_h: int, grid_w: int) -> torch.Tensor:
    """BEiT's table written out pair by pair (token 0 = CLS, then row-major patches)."""
    n = grid_h * grid_w
    r = (2 * grid_h - 1) * (2 * grid_w - 1) + 3
    out = torch.empty(n + 1, n + 1, dtype=torch.long)
    for i in range(n + 1):
        for j in range(n + 1):
            if i == 0 and j == 0:
                out[i, j] = r - 1
            elif j == 0:
                out[i, j] = r - 2  # patch -> cls
            elif i == 0:
                out[i, j] = r - 3  # cls -> patch
            else:
                yi, xi = divmod(i - 1, grid_w)
                yj, xj = divmod(j - 1, grid_w)
                out[i, j] = (yi - yj + grid_h - 1) * (2 * grid_w - 1) + (xi - xj + grid_w - 1)
    return out


@pytest.mark.parametrize("grid", [(3, 5), (5, 3), (14, 14), (1, 1)])
def test_index_matches_brute_force(grid):
    index = relative_position_index(*grid)
    n = grid[0] * grid[1]
    assert index.shape == (n + 1, n + 1) and index.dtype == torch.long
    assert torch.equal(index, _brute_force(*grid))
    assert num_relative_distance(*grid) == (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3
    assert int(index.max()) == num_relative_distance(*grid) - 1


def test_equal_displacements_share_an_index_and_different_ones_do_not():
    gh, gw = 3, 5
    index = relative_position_index(gh, gw)
    by_disp: dict[tuple[int, int], set[int]] = {}
    for i in range(gh * gw):
        for j in range(gh * gw):
            d = (i // gw - j // gw, i % gw - j % gw)
            by_disp.setdefault(d, set()).add(int(index[i + 1, j + 1]))
    assert all(len(v) == 1 for v in by_disp.values())
    ids = [next(iter(v)) for v in by_disp.values()]
    assert len(ids) == len(set(ids)) == (2 * gh - 1) * (2 * gw - 1)  # every displacement, all distinct
    r = num_relative_distance(gh, gw)
    assert not {r - 3, r - 2, r - 1} & set(ids)  # CLS entries never collide with patch pairs


def test_forward_shape_zero_init_and_buffer_not_saved():
    rpb = RelativePositionBias((3, 5), num_heads=4)
    assert rpb.relative_position_bias_table.shape == (num_relative_distance(3, 5), 4)
    bias = rpb()
    assert bias.shape == (1, 4, 16, 16) and bias.dtype == torch.float32
    assert (bias == 0).all()
    assert "relative_position_index" not in rpb.state_dict()
    assert "relative_position_bias_table" in rpb.state_dict()


def test_setting_table_entries_changes_exactly_the_expected_pairs():
    gh, gw, heads = 3, 5, 2
    rpb = RelativePositionBias((gh, gw), heads)
    index = relative_position_index(gh, gw)
    r = num_relative_distance(gh, gw)
    disp = (1 + gh - 1) * (2 * gw - 1) + (-2 + gw - 1)  # query one row below, two columns left
    with torch.no_grad():
        rpb.relative_position_bias_table[disp, 1] = 3.0
        rpb.relative_position_bias_table[r - 3, 0] = -1.0  # cls -> patch
    bias = rpb()[0]
    assert torch.equal(bias[1] != 0, index == disp)
    assert torch.equal(bias[0] != 0, index == r - 3)
    # Patch (1, 2) -> patch (0, 4): one row down, two columns left of its key.
    assert bias[1, 1 + 1 * gw + 2, 1 + 0 * gw + 4] == 3.0
    assert (bias[0, 0, 1:] == -1.0).all() and bias[0, 0, 0] == 0 and (bias[0, 1:, 0] == 0).all()


def test_gradients_reach_the_table():
    rpb = RelativePositionBias((2, 2), 3)
    rpb().sum().backward()
    grad = rpb.relative_position_bias_table.grad
    counts = torch.bincount(relative_position_index(2, 2).reshape(-1), minlength=num_relative_distance(2, 2))
    assert torch.equal(grad, counts[:, None].float().expand(-1, 3))
