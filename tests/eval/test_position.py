"""The position-share diagnostic: targets that are a function of position score 1, noise about 0."""

import pytest
import torch

from data2vec.eval.position import explained_share, position_features, position_share


def test_position_features_mark_both_edges_and_the_tenth():
    f = position_features(5, edge=2)
    assert f.shape == (5, 2 * 3 + 10) and torch.all(f.sum(1) == 3)
    assert f[0, 0] == 1 and f[4, 3 + 0] == 1  # distance 0 to the start / to the end
    assert f[2, 2] == 1 and f[2, 3 + 2] == 1  # the middle token is capped at edge=2 on both sides
    assert f[4, 6 + 8] == 1  # token 4 of 5 is in the ninth tenth


def test_targets_made_of_position_are_explained_and_noise_is_not():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 80, (60,), generator=g).tolist()
    proj = torch.randn(2 * 25 + 10, 16, generator=g)
    positional = [position_features(n) @ proj for n in lengths]
    noise = [torch.randn(n, 16, generator=g) for n in lengths]
    assert position_share(positional) > 0.999
    assert abs(position_share(noise)) < 0.05
    mixed = [p + 3 * z for p, z in zip(positional, noise)]
    assert 0.05 < position_share(mixed) < 0.95


def test_explained_share_checks_its_inputs():
    x = [torch.randn(4, 2)] * 3
    with pytest.raises(ValueError, match="2 feature sequences"):
        explained_share(x, x[:2])
    with pytest.raises(ValueError, match="need sequences to fit and to score"):
        explained_share(x[:1], x[:1])
    with pytest.raises(ValueError, match="length >= 1"):
        position_features(0)
