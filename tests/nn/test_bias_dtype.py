"""Under bf16 autocast, additive attention biases (ALiBi) and the teacher stay in float32."""

import torch

from data2vec.config import apply_overrides
from data2vec.nn.attention import Attention, combine_masks
from data2vec.presets import get_preset, tiny_overrides
from data2vec.models import build_model


def test_a_float32_bias_is_not_rounded_to_bf16():
    assert combine_masks(None, torch.zeros(1, 1, 4, 4), torch.bfloat16).dtype == torch.float32
    assert combine_masks(None, torch.zeros(1, 1, 4, 4), torch.float32).dtype == torch.float32
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    with torch.no_grad():
        attn.qkv.weight[:32] = 0  # q = k = 0: the logits are the bias alone
    x = torch.randn(1, 8, 16)
    # ALiBi-size distances: 300 and 301 are one bf16 step apart only in float32.
    bias = -(300.0 + (torch.arange(8) % 2).float()).expand(1, 2, 8, 8).contiguous()
    ref = attn(x, bias)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x, combine_masks(None, bias, torch.bfloat16))
        rounded = attn(x, bias.to(torch.bfloat16))
    err, err_rounded = (out.float() - ref).abs().max().item(), (rounded.float() - ref).abs().max().item()
    assert err < err_rounded / 4, (err, err_rounded)


def test_teacher_targets_are_float32_and_unchanged_by_autocast():
    cfg = get_preset("data2vec2_audio_tiny")
    cfg = apply_overrides(cfg, tiny_overrides("audio", 2))
    model = build_model(cfg.model).eval()
    teacher = model.make_teacher()
    audio = torch.randn(2, 8000)
    feats, pad = model.modality.local_features(audio, None)
    ref = model.teacher_targets(teacher, audio, feats, pad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model.teacher_targets(teacher, audio, feats.to(torch.bfloat16), pad)
    assert y.dtype == torch.float32
    # Only the bf16 rounding of the (shared) local features differs.
    torch.testing.assert_close(y, model.teacher_targets(teacher, audio, feats.to(torch.bfloat16).float(), pad))
    assert (y - ref).abs().max() < 0.1
