"""data2vec 1.0: targets per modality against hand-computed references, what the student sees,
the EMA parts, training progress, and the released architectures' sizes."""

import pytest
import torch
import torch.nn.functional as F

from data2vec.algorithms.common import teacher_targets
from data2vec.algorithms.data2vec1 import Data2Vec1Model
from data2vec.config import apply_overrides
from data2vec.data.synthetic import synthetic_batch
from data2vec.presets import get_preset, tiny_overrides
from data2vec.models import build_model

TINY = {"audio": "data2vec_audio_tiny", "text": "data2vec_text_tiny", "beit": "data2vec_image_tiny"}


def tiny(kind, *extra):
    cfg = get_preset(TINY[kind])
    return apply_overrides(cfg, [*tiny_overrides(kind, 1), *extra])


def model_and_batch(kind, *extra, seed=0):
    torch.manual_seed(seed)
    cfg = tiny(kind, *extra)
    model = build_model(cfg.model)
    batch = synthetic_batch(cfg.model.input, 2)
    if kind == "audio":  # no padding: instance norm over the whole time axis
        batch = {"audio": torch.randn(2, 8000)}
    if kind == "text":
        batch = {"tokens": batch["tokens"]}
    return cfg, model, batch


def _in_time(t):  # instance norm over time per sample and channel, (B, T, D)
    mean = t.mean(1, keepdim=True)
    var = t.var(1, unbiased=False, keepdim=True)
    return (t - mean) / torch.sqrt(var + 1e-5)


def _ln(t):  # LayerNorm without parameters over D
    mean = t.mean(-1, keepdim=True)
    var = t.var(-1, unbiased=False, keepdim=True)
    return (t - mean) / torch.sqrt(var + 1e-5)


def _teacher_pass(model, teacher, inputs):
    t = teacher.module
    feats, pad = model.modality.local_features(inputs, None)
    mod = t["modality"] if "modality" in t else model.modality
    if model.cfg.teacher.scope == "all":
        feats, pad = mod.local_features(inputs, None)
    ctx = mod.contextualize(feats, pad, None)
    return t["encoder"](ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias), feats


@pytest.mark.parametrize("kind", ["audio", "text", "beit"])
def test_targets_match_a_hand_computed_reference(kind):
    # Depth 4 so top-K is a strict subset: speech/text take FFN outputs, vision block outputs.
    cfg, model, batch = model_and_batch(kind, "model.encoder.depth=4", "model.targets.top_k=3")
    teacher = model.make_teacher()
    inputs = batch[model.modality.input_key]
    out, feats = _teacher_pass(model, teacher, inputs)
    E = model.modality.num_extra_tokens
    if kind == "audio":  # FFN outputs, instance norm per layer, plain average
        expected = sum(_in_time(h[:, E:]) for h in out.layer_results[-3:]) / 3
    elif kind == "text":  # FFN outputs, LayerNorm per layer, plain average
        expected = sum(_ln(h[:, E:]) for h in out.layer_results[-3:]) / 3
    else:  # end-of-block outputs, LayerNorm per layer, LayerNorm of the average
        expected = _ln(sum(_ln(h[:, E:]) for h in out.block_outputs[-3:]) / 3)
    got = teacher_targets(model.modality, teacher, model.cfg, inputs, feats, None)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def _capture_encoder_input(model):
    seen = {}

    def hook(module, args):
        seen["x"] = args[0].detach()

    return seen, model.encoder.register_forward_pre_hook(hook)


@pytest.mark.parametrize("kind", ["audio", "beit"])
def test_the_1_0_student_sees_every_token_with_mask_embeddings(kind, monkeypatch):
    cfg, model, batch = model_and_batch(kind)
    seen_ctx = {}
    real = model.modality.contextualize

    def spy(x, pad, info):
        seen_ctx["x"], seen_ctx["info"] = x.detach(), info
        return real(x, pad, info)

    monkeypatch.setattr(model.modality, "contextualize", spy)
    seen, handle = _capture_encoder_input(model)
    teacher = model.make_teacher()
    model.pretrain_forward(batch, teacher, torch.Generator().manual_seed(0))
    handle.remove()
    feats, _ = model.modality.local_features(batch[model.modality.input_key], batch.get("padding_mask"))
    assert seen_ctx["info"] is None  # nothing dropped
    x = seen_ctx["x"]
    assert x.shape == feats.shape
    masked = (x == model.mask_emb.detach()).all(-1)  # (B, T): rows equal to the mask embedding
    assert masked.any() and not masked.all()
    assert seen["x"].shape[1] == feats.shape[1] + model.modality.num_extra_tokens


def test_the_1_0_text_student_sees_mask_ids_where_the_loss_is():
    cfg, model, batch = model_and_batch("text")
    calls = []
    real = model.modality.local_features
    model.modality.local_features = lambda tokens, pad=None: (calls.append(tokens.clone()), real(tokens, pad))[1]
    model.pretrain_forward(batch, model.make_teacher(), torch.Generator().manual_seed(0))
    mask_id = cfg.model.input.vocab_size - 1
    student_tokens = calls[-1]
    assert (student_tokens == mask_id).any()
    assert not (batch["tokens"] == mask_id).any()
    assert model.mask_emb is None  # text masks ids, not features


def test_the_2_0_student_does_not_see_masked_tokens():
    cfg = apply_overrides(get_preset("data2vec2_image_tiny"), tiny_overrides("image"))
    model = build_model(cfg.model)
    seen, handle = _capture_encoder_input(model)
    batch = synthetic_batch(cfg.model.input, 2)
    model.pretrain_forward(batch, model.make_teacher(), torch.Generator().manual_seed(0))
    handle.remove()
    patches = (cfg.model.input.image_size // cfg.model.input.patch_size) ** 2
    keep = int(patches * (1 - cfg.model.input.mask_prob))  # inverse block masking keeps exactly this many
    assert seen["x"].shape[1] == 1 + keep  # CLS + visible patches only


@pytest.mark.parametrize("kind", ["audio", "text", "beit"])
def test_a_few_steps_lower_the_loss(kind):
    cfg, model, batch = model_and_batch(kind, "model.teacher.decay=0.999", "model.teacher.end_decay=0.999")
    teacher = model.make_teacher()
    # BEiT starts slowly: layer scale 0.1 keeps every mask token's output alike at first, and its
    # truncated init (effective std 0.011) wants a higher lr at this size.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2 if kind == "beit" else 5e-3)
    losses = []
    for step in range(100 if kind == "beit" else 40):
        out = model.pretrain_forward(batch, teacher, torch.Generator().manual_seed(0), step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        teacher.update(model, step + 1)
        losses.append(out.loss.item())
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5, losses


def test_teacher_copies_shared_parts_and_averages_the_rest():
    for kind, copied, averaged in (("audio", "modality.relative_positional_encoder.1.0.weight", "encoder.blocks.0.attn.qkv.weight"),
                                   ("text", "modality.local_encoder.embed_tokens.weight", "encoder.blocks.0.mlp.fc1.weight")):
        cfg, model, _ = model_and_batch(kind)
        teacher = model.make_teacher()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        teacher.update(model, 1)
        t = dict(teacher.module.named_parameters())
        s = dict(model.named_parameters())
        torch.testing.assert_close(t[copied], s[copied])
        assert not torch.allclose(t[averaged], s[averaged])
    cfg, model, _ = model_and_batch("audio")
    assert not any(n.startswith("modality.local_encoder") for n, _ in model.make_teacher().module.named_parameters())


def test_beit_teacher_uses_a_constant_decay():
    cfg, model, _ = model_and_batch("beit")
    teacher = model.make_teacher()
    assert {teacher.update(model, s) for s in (1, 100, 10_000)} == {cfg.model.teacher.decay}


def test_per_layer_relative_bias_gives_one_table_per_block():
    cfg, model, batch = model_and_batch("beit", "model.input.rel_pos_bias=per_layer")
    tables = [n for n, _ in model.named_parameters() if "relative_position_bias_table" in n]
    assert len(tables) == cfg.model.encoder.depth
    with torch.no_grad():
        model.modality.rel_pos_bias[1].relative_position_bias_table.add_(1.0)
    model.eval()
    assert torch.isfinite(model.extract_features(batch["image"]).x).all()


@pytest.mark.parametrize("field,value", [("model.clone_batch", "2"), ("model.targets.layer", "middle"),
                                         ("model.loss.cls_weight", "0.01")])
def test_invalid_1_0_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field.split(".", 1)[1]):
        Data2Vec1Model(tiny("beit", f"{field}={value}").model)


@pytest.mark.parametrize("preset,low,high", [
    ("data2vec_image_base", 85.5e6, 86.5e6),  # BEiT-B/16 without its head: 85.8M
    ("data2vec_audio_base", 93e6, 95e6),  # data2vec audio base: ~94M
    ("data2vec_text_base", 124e6, 126e6),  # RoBERTa-base size: ~124.6M
])
def test_released_1_0_architectures_have_the_published_sizes(preset, low, high):
    model = build_model(get_preset(preset).model)
    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("head."))
    assert low < n < high, n
