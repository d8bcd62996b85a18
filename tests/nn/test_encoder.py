import pytest
import torch

from data2vec.config import EncoderConfig
from data2vec.nn.attention import combine_masks
from data2vec.nn.encoder import TransformerEncoder
from data2vec.nn.pos_embed import sincos_2d


def _enc(**kw):
    cfg = EncoderConfig(dim=16, depth=3, num_heads=2, **kw)
    return TransformerEncoder(cfg).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_results_are_ffn_outputs_before_residual(norm_first):
    enc = _enc(norm_first=norm_first)
    x = torch.randn(2, 5, 16)
    out = enc(x)
    assert len(out.layer_results) == 3 and len(out.block_outputs) == 3
    # Recompute block 0 by hand and check the FFN tensor.
    b = enc.blocks[0]
    if norm_first:
        h = x + b.attn(b.norm1(x))
        ffn = b.mlp(b.norm2(h))
        end = h + ffn
    else:
        h = b.norm1(x + b.attn(x))
        ffn = b.mlp(h)
        end = b.norm2(h + ffn)
    torch.testing.assert_close(out.layer_results[0], ffn)
    torch.testing.assert_close(out.block_outputs[0], end)
    if norm_first:  # pre-LN stacks end with a final norm
        torch.testing.assert_close(out.x, enc.norm(out.block_outputs[-1]))
    else:
        torch.testing.assert_close(out.x, out.block_outputs[-1])


def test_layer_scale_starts_small():
    enc = _enc(norm_first=True, layer_scale_init=1e-4)
    assert torch.allclose(enc.blocks[0].gamma_1, torch.full((16,), 1e-4))
    x = torch.randn(2, 5, 16)
    # With tiny layer scale each block is close to the identity on the residual stream.
    assert (enc(x).block_outputs[0] - x).abs().max() < 1e-2


def test_padding_mask_makes_padding_irrelevant():
    enc = _enc()
    x = torch.randn(2, 6, 16)
    pad = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    y1 = enc(x, pad).x
    x2 = x.clone()
    x2[0, 4:] = 100.0  # change only padded positions
    y2 = enc(x2, pad).x
    torch.testing.assert_close(y1[0, :4], y2[0, :4])
    torch.testing.assert_close(y1[0, :4], enc(x[:1, :4]).x[0])


def test_additive_bias_changes_attention_and_combines_with_padding():
    enc = _enc()
    x = torch.randn(1, 4, 16)
    bias = torch.zeros(1, 2, 4, 4)
    bias[..., 3] = -1e4  # nobody attends to token 3
    y = enc(x, attn_bias=bias).x
    x2 = x.clone()
    x2[0, 3] += 5.0
    y2 = enc(x2, attn_bias=bias).x
    torch.testing.assert_close(y[0, :3], y2[0, :3])
    m = combine_masks(torch.tensor([[False, False, True, False]]), bias, torch.float32)
    assert m.shape == (1, 2, 4, 4) and torch.isinf(m[..., 2]).all()


def test_drop_path_and_layer_drop_only_in_training():
    enc = TransformerEncoder(EncoderConfig(dim=16, depth=4, num_heads=2, drop_path=0.5, layer_drop=0.5))
    x = torch.randn(8, 3, 16)
    enc.eval()
    torch.testing.assert_close(enc(x).x, enc(x).x)
    assert len(enc(x).layer_results) == 4
    enc.train()
    torch.manual_seed(3)
    counts = {len(enc(x).layer_results) for _ in range(20)}
    assert len(counts) > 1  # some blocks skipped in some passes
    assert enc.blocks[0].drop_path.p == 0.0 and enc.blocks[-1].drop_path.p == pytest.approx(0.5)


def test_sincos_2d_rows_and_columns():
    pe = sincos_2d(16, 3, 3)
    assert pe.shape == (9, 16)
    # Patches in the same column share the first half (column code), same row the second.
    torch.testing.assert_close(pe[0, :8], pe[3, :8])
    torch.testing.assert_close(pe[0, 8:], pe[1, 8:])
    assert not torch.allclose(pe[0], pe[4])
