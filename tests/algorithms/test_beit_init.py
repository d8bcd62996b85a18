"""data2vec 1.0 vision initialises as BEiT: trunc_normal(std=0.02) cut at +-1 std, patch conv included."""

import torch
from torch import nn

from data2vec.presets import get_preset
from data2vec.models import build_model


def test_beit_weights_are_truncated_at_one_std():
    model = build_model(get_preset("data2vec_image_fmnist").model)
    conv = model.modality.local_encoder.proj
    assert isinstance(conv, nn.Conv2d)
    for w in [conv.weight, model.mask_emb, model.modality.extra_tokens, model.head.weight,
              model.encoder.blocks[0].attn.qkv.weight]:
        assert w.abs().max() <= 0.02 + 1e-7
    big = model.encoder.blocks[0].mlp.fc1.weight
    # N(0, 0.02) truncated at +-0.02 has std 0.02 * 0.5396 = 0.0108.
    assert abs(big.std().item() - 0.0108) < 0.0008
    assert abs(conv.weight.std().item() - 0.0108) < 0.002
    assert all(float(m.bias.detach().abs().max()) == 0 for m in model.modules() if isinstance(m, nn.Linear) and m.bias is not None)


def test_speech_and_text_keep_bert_init():
    model = build_model(get_preset("data2vec_audio_tiny").model)
    w = model.encoder.blocks[0].mlp.fc1.weight
    assert w.abs().max() > 0.03 and abs(w.std().item() - 0.02) < 0.002
