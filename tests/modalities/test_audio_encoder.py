import math

import pytest
import torch
import torch.nn.functional as F

from data2vec.config import ConfigError, EncoderConfig, check_choices
from data2vec.masking.audio import block_mask_1d
from data2vec.masking.common import make_mask_info
from data2vec.modalities.audio import (
    AudioEncoder, AudioInputConfig, FeatureEncoder, alibi_bias, alibi_slopes, conv1d_time_major, conv_output_lengths,
    feature_padding_mask,
)

CFG = AudioInputConfig(conv_channels=16, conv_pos_groups=4, prenet_depth=1)
ENC = EncoderConfig(dim=16, depth=1, num_heads=4)


def _encoder():
    torch.manual_seed(0)
    return AudioEncoder(CFG, ENC).eval()


@pytest.mark.parametrize("cin,k,s,t", [(1, 10, 5, 401), (6, 3, 2, 40), (6, 3, 2, 41), (6, 2, 2, 9), (5, 4, 1, 12),
                                       (3, 2, 3, 11)])
def test_time_major_conv_equals_conv1d_values_and_gradients(cin, k, s, t):
    torch.manual_seed(0)
    x = torch.randn(3, cin, t, requires_grad=True)
    w = torch.randn(7, cin, k, requires_grad=True)
    ref = F.conv1d(x, w, stride=s)
    out = conv1d_time_major(x.transpose(1, 2), w, s)
    assert out.shape == (3, ref.shape[2], 7)
    assert torch.allclose(out, ref.transpose(1, 2), atol=1e-5)
    g = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, w), g)
    rx, rw = torch.autograd.grad(ref, (x, w), g.transpose(1, 2))
    assert torch.allclose(gx, rx, atol=1e-5) and torch.allclose(gw, rw, atol=1e-4)


def test_feature_encoder_equals_its_modules_run_channel_major():
    torch.manual_seed(0)
    fe = FeatureEncoder(CFG.conv_layers, 16)
    wav = torch.randn(2, 3000)
    h = wav.unsqueeze(1)
    for blk in fe.conv_layers:  # conv on (B, C, T), LayerNorm between transposes: fairseq's layout
        h = blk(h)
    assert torch.allclose(fe(wav), fe.project_features(h), atol=1e-5)


def test_conv_output_lengths_match_running_the_convs():
    layers = AudioInputConfig().conv_layers
    for n in [0, 399, 400, 401, 719, 720, 1000, 16000, 16321, 32999]:
        x = torch.zeros(1, 1, n)
        for _, k, s in layers:
            x = F.conv1d(x, torch.zeros(1, 1, k), stride=s) if x.shape[-1] >= k else x[..., :0]
        assert conv_output_lengths(torch.tensor([n]), layers).item() == x.shape[-1], n
    assert conv_output_lengths(torch.tensor([16000]), layers).item() == 49  # 50 Hz, 25 ms window


def test_feature_padding_mask_matches_per_utterance_runs():
    enc = _encoder()
    lengths = [16000, 9000, 4321]
    wavs = [torch.randn(n) for n in lengths]
    batch = torch.zeros(3, max(lengths))
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    pad = torch.arange(batch.shape[1])[None] >= torch.tensor(lengths)[:, None]
    with torch.no_grad():
        x, fpad = enc.local_features(batch, pad)
        for i, w in enumerate(wavs):
            alone, none = enc.local_features(w[None])
            assert none is None
            n = alone.shape[1]
            assert int((~fpad[i]).sum()) == n  # exact frame count, frames after it are padding
            torch.testing.assert_close(x[i, :n], alone[0], atol=1e-5, rtol=1e-4)
    assert torch.equal(fpad, feature_padding_mask(pad, x.shape[1], CFG.conv_layers))


def test_alibi_slopes_are_the_standard_values():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    s12 = alibi_slopes(12)  # 8 geometric slopes, then every other slope of the 16-head set
    torch.testing.assert_close(s12[:8], alibi_slopes(8))
    torch.testing.assert_close(s12[8:], alibi_slopes(16)[0::2][:4])


def test_alibi_bias_values_and_gathering_keep_true_distances():
    slopes, scale = alibi_slopes(4), torch.tensor([1.0, 0.5, 2.0, 0.0])
    T = 12
    full = alibi_bias(torch.arange(T)[None], slopes, scale)  # (1, H, T, T)
    assert full[0, 0, 2, 5] == pytest.approx(-0.25 * 3)  # -slope * scale * |i - j|
    assert full[0, 2, 7, 1] == pytest.approx(-(2 ** -6) * 2.0 * 6)
    assert (full[0, 3] == 0).all() and (full.diagonal(dim1=-2, dim2=-1) == 0).all()
    keep = torch.tensor([[0, 3, 4, 10], [1, 2, 8, 11]])
    gathered = alibi_bias(keep, slopes, scale)
    for b in range(2):  # same as taking the rows and columns of the full table (fairseq masked_alibi)
        torch.testing.assert_close(gathered[b], full[0][:, keep[b]][:, :, keep[b]])


def test_contextualize_gathers_positions_and_bias_for_kept_frames():
    enc = _encoder()
    x = torch.randn(2, 30, 16)
    mask = block_mask_1d(2, 30, 0.5, 5, 0.05, None, torch.Generator().manual_seed(0))
    info = make_mask_info(mask)
    ctx = enc.contextualize(x, None, info)
    assert ctx.x.shape == (2, 15, 16) and ctx.attn_bias.shape == (2, 4, 15, 15)
    expect = alibi_bias(info.ids_keep, enc.slopes, enc.alibi_scale)
    torch.testing.assert_close(ctx.attn_bias, expect)


def test_masked_frames_are_zeroed_before_the_positional_convs():
    enc = _encoder()
    x = torch.randn(1, 40, 16)
    info = make_mask_info(block_mask_1d(1, 40, 0.5, 5, 0.0, None, torch.Generator().manual_seed(1)))
    changed = x.clone()
    changed[info.mask] = 100.0  # whatever sits in masked frames must not leak into kept ones
    torch.testing.assert_close(enc.contextualize(x, None, info).x, enc.contextualize(changed, None, info).x)


def test_alibi_scale_is_learned_per_head_and_clamped_non_negative():
    enc = AudioEncoder(AudioInputConfig(conv_channels=16, conv_pos_groups=4, alibi_scale_init=0.5), ENC)
    assert enc.alibi_scale.requires_grad and enc.alibi_scale.tolist() == [0.5] * 4
    with torch.no_grad():
        enc.alibi_scale.fill_(-3.0)
    ctx = enc.contextualize(torch.randn(1, 10, 16), None, None)
    assert (ctx.attn_bias == 0).all()


def test_padding_is_passed_to_attention_and_never_masked():
    enc = _encoder()
    pad = torch.arange(20)[None] >= torch.tensor([20, 12])[:, None]
    mask = enc.make_mask(pad, 2, 20, torch.Generator().manual_seed(0))
    assert not (mask & pad).any() and mask.sum(1).tolist() == [6, 6]
    ctx = enc.contextualize(torch.randn(2, 20, 16), pad, make_mask_info(mask))
    assert ctx.padding_mask.sum(1).tolist() == [0, 8]


def test_pos_conv_kernel_and_groups_follow_the_reference():
    enc = AudioEncoder(AudioInputConfig(), EncoderConfig(dim=768, depth=0, num_heads=12))
    convs = [m for m in enc.relative_positional_encoder.modules() if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 5 and all(c.kernel_size == (19,) and c.groups == 16 for c in convs)
    feats = enc.local_encoder.conv_layers
    assert [b[0].kernel_size[0] for b in feats] == [10, 3, 3, 3, 3, 2, 2]
    assert all(b[0].bias is None and b[0].out_channels == 512 for b in feats)
    assert math.prod(b[0].stride[0] for b in feats) == 320


def test_data2vec_1_0_audio_has_no_alibi_and_draws_equal_count_spans():
    import dataclasses

    cfg = dataclasses.replace(CFG, alibi=False, mask_type="span", mask_prob=0.65, mask_length=10)
    enc = AudioEncoder(cfg, ENC).eval()
    assert not hasattr(enc, "alibi_scale") and "slopes" not in dict(enc.named_buffers())
    x = torch.randn(2, 40, 16)
    assert enc.contextualize(x, None, None).attn_bias is None
    mask = enc.make_mask(None, 3, 200, torch.Generator().manual_seed(0))
    assert mask.sum(1).unique().numel() == 1 and mask.float().mean() > 0.3
    with pytest.raises(ConfigError, match="model.input.mask_type='blocks': expected one of 'block', 'span'"):
        check_choices(dataclasses.replace(CFG, mask_type="blocks"), "model.input")
