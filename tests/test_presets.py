"""Contract tests over every preset: build, forward, backward, teacher update, state round trip;
every registered modality has presets, and its encoder keeps the `Modality` contract."""

import pytest
import torch

from data2vec.config import PretrainConfig, apply_overrides, check_choices, from_dict, to_dict
from data2vec.data.synthetic import synthetic_batch
from data2vec.modalities import Modality, specs
from data2vec.presets import get_preset, list_presets, tiny_overrides
from data2vec.data.multimodal import synthetic_batches
from data2vec.models import build_model, input_key


def tiny_inputs(cfg, batch=2):
    return synthetic_batch(cfg.model.input, batch)


def _batches(cfg):
    """One batch, or one per modality of a multimodal model."""
    if cfg.model.input.kind == "multi":
        return list(synthetic_batches(cfg.model.input, 2).values())
    return [tiny_inputs(cfg)]


def _features(model, batch):
    x = batch[input_key(model, batch)]
    return (model.extract_features(x, modality=batch["modality"]) if "modality" in batch
            else model.extract_features(x)).x


def _step(cfg):
    model = build_model(cfg.model)
    teacher = model.make_teacher()
    batches = _batches(cfg)
    for batch in batches:
        out = model.pretrain_forward(batch, teacher, torch.Generator().manual_seed(0))
        assert torch.isfinite(out.loss)
        out.loss.backward()
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    teacher.update(model, 1)
    model2 = build_model(cfg.model)
    model2.load_state_dict(model.state_dict())
    model.eval(), model2.eval()
    for batch in batches:
        torch.testing.assert_close(_features(model, batch), _features(model2, batch))
    return out


@pytest.mark.parametrize("name", list(list_presets()))
def test_every_preset_at_tiny_size(name):
    cfg = get_preset(name)
    assert check_choices(cfg) is cfg and from_dict(PretrainConfig, to_dict(cfg)) == cfg
    tiny = apply_overrides(cfg, tiny_overrides(cfg.model.input.kind, cfg.model.version))
    model = build_model(tiny.model)
    encoders = model.modalities.values() if cfg.model.input.kind == "multi" else [model.modality]
    assert all(isinstance(m, Modality) for m in encoders)
    _step(tiny)


def test_every_registered_modality_has_presets_at_every_version_it_shrinks():
    """Presets of each kind and version exist exactly where the modality registers tiny settings,
    so the test above covers every modality (image, BEiT, audio, text, time series, ...) and the
    joint multimodal model."""
    have = {(get_preset(n).model.input.kind, get_preset(n).model.version) for n in list_presets()}
    registered = {(kind, v) for kind, spec in specs().items() for v in spec.tiny_overrides}
    assert have == registered
    assert {"image", "beit", "audio", "text", "multi"} <= set(specs())


def test_image_base_full_size_builds_and_runs_a_step():
    cfg = apply_overrides(get_preset("data2vec2_image_base"), ["model.clone_batch=2"])
    model = build_model(cfg.model)
    n = sum(p.numel() for n_, p in model.named_parameters() if not n_.startswith("decoder"))
    assert 85e6 < n < 87e6  # ViT-B/16 encoder, ~86M
    assert len(model.modality.context_encoder.blocks) + len(model.encoder.blocks) == 12
    out = model.pretrain_forward(tiny_inputs(cfg, 1), model.make_teacher(), torch.Generator().manual_seed(0))
    out.loss.backward()
    # 80% of 196 patches masked in each view.
    assert out.logs["masked_views"] == 2


@pytest.mark.parametrize("name", [n for n in list_presets() if not n.endswith("_tiny")])
def test_the_teacher_leaves_its_random_init_within_the_presets_run(name):
    """A schedule sized for 400k updates on a 500-step preset left the teacher 46% random."""
    from data2vec.algorithms.ema import teacher_lag_warning

    cfg = get_preset(name)
    assert teacher_lag_warning(cfg.model.teacher, cfg.train.max_steps) is None
