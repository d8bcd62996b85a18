import math

import pytest
import torch

from data2vec.algorithms.losses import feature_std, regression_loss
from data2vec.algorithms.targets import instance_norm_time, make_targets
from data2vec.config import TargetConfig


def _hand_instance_norm(t):  # t: (B, T, D), per sample and channel over time, biased var
    mean = t.mean(1, keepdim=True)
    var = ((t - mean) ** 2).mean(1, keepdim=True)
    return (t - mean) / torch.sqrt(var + 1e-5)


def _hand_layer_norm(t):
    mean = t.mean(-1, keepdim=True)
    var = ((t - mean) ** 2).mean(-1, keepdim=True)
    return (t - mean) / torch.sqrt(var + 1e-5)


def test_top_k_instance_norm_then_layer_norm_of_average():
    layers = [torch.randn(2, 4, 3) * (i + 1) + i for i in range(5)]
    cfg = TargetConfig(top_k=3, instance_norm_layers=True, layer_norm_final=True)
    y = make_targets(layers, cfg)
    ref = sum(_hand_instance_norm(t) for t in layers[2:]) / 3
    ref = _hand_layer_norm(ref)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_layer_norm_per_layer_variant_and_no_final():
    layers = [torch.randn(2, 4, 6) for _ in range(3)]
    y = make_targets(layers, TargetConfig(top_k=2, instance_norm_layers=False, layer_norm_layers=True))
    torch.testing.assert_close(y, (_hand_layer_norm(layers[1]) + _hand_layer_norm(layers[2])) / 2, atol=1e-5, rtol=1e-5)


def test_instance_norm_normalizes_over_time_not_channels():
    # A ported-code bug normalized each frame over channels; ours normalizes each channel over time.
    t = torch.randn(1, 50, 4) * torch.tensor([1.0, 10.0, 100.0, 0.1]) + 7
    y = instance_norm_time(t)
    torch.testing.assert_close(y.mean(1), torch.zeros(1, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(1, unbiased=False), torch.ones(1, 4), atol=1e-3, rtol=0)


def test_instance_norm_ignores_padding():
    t = torch.randn(1, 6, 3)
    pad = torch.tensor([[False] * 4 + [True] * 2])
    y = instance_norm_time(t, pad)
    torch.testing.assert_close(y[:, :4], instance_norm_time(t[:, :4]), atol=1e-5, rtol=1e-5)
    assert (y[:, 4:] == 0).all()


def test_top_k_out_of_range():
    with pytest.raises(ValueError, match="top_k"):
        make_targets([torch.randn(1, 2, 3)], TargetConfig(top_k=2))


def test_regression_loss_l2_scaled_by_inverse_sqrt_dim_and_smooth_l1():
    p, t = torch.randn(5, 16), torch.randn(5, 16)
    assert regression_loss(p, t).item() == pytest.approx(((p - t) ** 2).sum().item() / 4.0, rel=1e-5)
    assert regression_loss(p, t, scale=1.0).item() == pytest.approx(((p - t) ** 2).sum().item(), rel=1e-5)
    beta = 2.0
    d = (p - t).abs()
    sl1 = torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).sum()
    assert regression_loss(p, t, beta=beta, scale=1.0).item() == pytest.approx(sl1.item(), rel=1e-5)


def test_feature_std():
    x = torch.randn(10000, 8) * 3
    assert feature_std(x).item() == pytest.approx(3.0, rel=0.05)
    assert feature_std(torch.ones(100, 8)).item() == pytest.approx(math.sqrt(1e-6), rel=1e-3)
