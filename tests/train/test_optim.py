"""Weight decay groups: fairseq's per-config rule (composite optimizer or plain Adam)."""

import pytest

from data2vec.config import TrainConfig, apply_overrides
from data2vec.presets import get_preset, list_presets, tiny_overrides
from data2vec.train.optim import build_optimizer, param_groups
from data2vec.models import build_model


def _tiny(name):
    cfg = get_preset(name)
    return apply_overrides(cfg, tiny_overrides(cfg.model.input.kind, cfg.model.version))


def test_decay_all_params_puts_biases_norms_and_alibi_scales_in_the_decayed_group():
    cfg = _tiny("data2vec2_audio_tiny")
    model = build_model(cfg.model)
    names = {id(p): n for n, p in model.named_parameters()}
    split = param_groups(model, 0.01, decay_all=False)
    no_decay = {names[id(p)] for p in split[1]["params"]}
    assert "modality.alibi_scale" in no_decay and any(n.endswith(".bias") for n in no_decay)
    every = param_groups(model, 0.01, decay_all=True)
    assert len(every[1]["params"]) == 0
    assert len(every[0]["params"]) == sum(1 for p in model.parameters() if p.requires_grad)
    opt = build_optimizer(model, cfg.train)
    assert cfg.train.decay_all_params and opt.param_groups[1]["params"] == []


# fairseq: the composite optimizer (weight_decay_scale 0 for biases/norms) only in the 2.0 image
# and text configs; plain Adam elsewhere decays everything. BEiT skips 1-D parameters. The joint
# image + speech + text model follows the two 2.0 modalities that use the composite optimizer.
EXPECTED = {"data2vec2_audio": True, "data2vec_audio": True, "data2vec_text": True,
            "data2vec2_image": False, "data2vec2_text": False, "data2vec_image": False, "data2vec2_multi": False}


@pytest.mark.parametrize("name", [n for n in list_presets() if any(n.startswith(k + "_") for k in EXPECTED)])
def test_every_preset_follows_its_reference_weight_decay_rule(name):
    family = next(k for k in EXPECTED if name.startswith(k + "_"))
    assert get_preset(name).train.decay_all_params is EXPECTED[family]


def test_default_excludes_biases_and_norms():
    assert TrainConfig().decay_all_params is False


def test_collapse_guard_on_the_2_0_audio_and_text_base_presets_as_fairseq():
    for name in ("data2vec2_audio_base", "data2vec2_text_base"):
        m = get_preset(name).model
        assert (m.min_target_std, m.min_pred_std, m.collapse_check_after) == (0.1, 0.01, 5000)
    m = get_preset("data2vec2_image_base").model
    assert m.min_target_std == m.min_pred_std == 0.0  # the image configs switch it off
