import pytest
import torch

from data2vec.config import apply_overrides
from data2vec.data.synthetic import synthetic_batch
from data2vec.modalities.text import make_positions
from data2vec.presets import get_preset, tiny_overrides
from data2vec.models import build_model


@pytest.fixture(scope="module")
def base_model():
    return build_model(get_preset("data2vec2_text_base").model)  # built once: ~125M parameters


def _tiny(*extra):
    cfg = get_preset("data2vec2_text_tiny")
    return apply_overrides(cfg, [*tiny_overrides("text"), *extra])


def test_positions_follow_fairseq_offset_convention(base_model):
    not_pad = torch.tensor([[True, True, True, False], [True, True, True, True]])
    assert make_positions(not_pad, 1).tolist() == [[2, 3, 4, 1], [2, 3, 4, 5]]
    local = base_model.modality.local_encoder
    assert local.embed_positions.weight.shape == (514, 768)  # 512 + padding_idx + 1
    assert local.embed_tokens.weight.shape == (50265, 768)
    assert local.embed_tokens.weight[1].abs().sum() == 0  # the <pad> row


def test_reference_key_layout_and_teacher_scope_blocks(base_model):
    model = base_model
    keys = set(model.state_dict())
    for k in ("modality.local_encoder.embed_tokens.weight", "modality.local_encoder.embed_positions.weight",
              "modality.local_encoder.layernorm_embedding.weight", "decoder.blocks.4.0.weight",
              "decoder.proj.0.weight", "decoder.proj.2.weight"):
        assert k in keys, k
    assert model.decoder.proj[0].weight.shape == (1536, 768) and not model.decoder.residual
    assert model.modality.context_encoder is None  # prenet depth 0: no norm, no dropout
    teacher = model.make_teacher()
    assert {k.split(".")[0] for k in teacher.module.state_dict()} == {"encoder"}  # embeddings are shared


def test_padding_does_not_change_the_features_of_real_tokens():
    model = build_model(_tiny().model).eval()
    tokens = torch.randint(4, 300, (1, 10))
    padded = torch.cat([tokens, torch.ones(1, 6, dtype=torch.long)], dim=1)  # pad id 1
    a = model.extract_features(tokens).x
    b = model.extract_features(padded).x[:, :10]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_pretrain_step_with_padding_and_prenet():
    for extra in ([], ["model.input.prenet_depth=1"]):
        cfg = _tiny(*extra)
        model = build_model(cfg.model)
        batch = synthetic_batch(cfg.model.input, 3)
        out = model.pretrain_forward(batch, model.make_teacher(), torch.Generator().manual_seed(0))
        assert torch.isfinite(out.loss)
        out.loss.backward()
        assert model.modality.local_encoder.embed_tokens.weight.grad is not None


def test_too_long_sequence_names_the_field():
    model = build_model(_tiny().model)
    with pytest.raises(ValueError, match="max_positions"):
        model.extract_features(torch.randint(4, 300, (1, 65)))


def test_text_base_full_size_builds_and_runs_a_step(base_model):
    cfg, model = get_preset("data2vec2_text_base"), base_model
    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("decoder"))
    assert 124e6 < n < 126e6  # RoBERTa-base size
    batch = synthetic_batch(cfg.model.input, 1)
    out = model.pretrain_forward(batch, model.make_teacher(), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert out.logs["masked_views"] == 8  # clone_batch 8


def test_embedding_dropout_only_in_training():
    model = build_model(_tiny("model.input.embed_dropout=0.5").model)
    tokens = torch.randint(4, 300, (2, 12))
    model.eval()
    torch.testing.assert_close(model.extract_features(tokens).x, model.extract_features(tokens).x)
    model.train()
    a, _ = model.modality.local_features(tokens)
    b, _ = model.modality.local_features(tokens)
    assert not torch.equal(a, b)


def test_mask_type_is_checked_and_mlm_masks_spans():
    from data2vec.config import ConfigError, EncoderConfig, check_choices
    from data2vec.modalities.text import TextEncoder, TextInputConfig

    enc = EncoderConfig(dim=16, depth=1, num_heads=2)
    with pytest.raises(ConfigError, match="model.input.mask_type='bert': expected one of 'random', 'mlm'"):
        check_choices(TextInputConfig(vocab_size=50, mask_type="bert"), "model.input")
    text = TextEncoder(TextInputConfig(vocab_size=50, mask_type="mlm", mask_prob=0.35, mask_span=4), enc)
    mask = text.make_mask(None, 4, 64, torch.Generator().manual_seed(0))
    tokens = torch.randint(4, 49, (4, 64))
    corrupted, at_mask = text.corrupt(tokens, mask, torch.Generator().manual_seed(0))
    assert torch.equal(at_mask, mask) and (corrupted[mask] == 49).all() and torch.equal(corrupted[~mask], tokens[~mask])
