"""The joint multimodal model: one shared encoder, per-modality parts, teacher scopes, loss
weights, and each modality's loss equal to a single-modality data2vec 2.0 model's."""

import dataclasses

import pytest
import torch

from data2vec.algorithms.data2vec2 import Data2Vec2Model
from data2vec.algorithms.multimodal import (
    MultimodalModel, modality_config, modality_model_config, teacher_prefix,
)
from data2vec.checkpoints.imported import Imported
from data2vec.checkpoints.multimodal import pick_modality, require_one_modality, select_modality
from data2vec.config import ConfigError, DecoderConfig, PretrainConfig, apply_overrides, from_dict, to_dict
from data2vec.data.multimodal import synthetic_batches
from data2vec.models import build_finetuned, build_model
from data2vec.heads.finetuned import HeadConfig
from data2vec.presets import get_preset


@pytest.fixture(scope="module")
def cfg():
    return get_preset("data2vec2_multi_tiny")


def _with_branch(cfg, modality, **changes):
    branches = tuple(dataclasses.replace(b, **changes) if b.name == modality else b
                     for b in cfg.model.input.branches)
    inp = dataclasses.replace(cfg.model.input, branches=branches)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input=inp))


def test_one_shared_encoder_and_per_modality_parts(cfg):
    model = build_model(cfg.model)
    assert isinstance(model, MultimodalModel)
    assert sorted(model.modalities) == sorted(model.decoders) == ["audio", "image", "text"]
    for view in model.views.values():  # every modality runs through the same encoder object
        assert view.encoder is model.encoder
    heads = {k.split(".")[0] for k in model.state_dict()}
    assert heads == {"encoder", "modalities", "decoders"}  # the views add no keys
    assert from_dict(PretrainConfig, to_dict(cfg)) == cfg


def test_teacher_scope_is_per_modality(cfg):
    # image "all": its own patch embedding; audio "context": shares the CNN; text "blocks": only the encoder.
    keys = set(build_model(cfg.model).make_teacher().module.state_dict())
    assert any(k.startswith("modalities.image.local_encoder.") for k in keys)
    assert any(k.startswith("modalities.audio.") for k in keys)
    assert not any(k.startswith("modalities.audio.local_encoder.") for k in keys)
    assert not any(k.startswith("modalities.text.") for k in keys)
    assert not any(k.startswith("decoders.") for k in keys)
    assert teacher_prefix("audio", "modality.local_encoder") == "modalities.audio.local_encoder"
    assert teacher_prefix("audio", "encoder.blocks") == "encoder.blocks"


def test_teacher_copied_prefixes_follow_the_modality(cfg):
    cfg = _with_branch(cfg, "text", teacher_scope="all", teacher_copied=("modality.local_encoder",))
    teacher = build_model(cfg.model).make_teacher()
    assert teacher.cfg.copied == ("modalities.text.local_encoder",)


@pytest.mark.parametrize("name", ["image", "audio", "text"])
def test_each_modality_loss_is_the_single_modality_models(cfg, name):
    """The joint model's loss on a batch equals that of the single-modality 2.0 model holding
    the same weights (selected by the checkpoint key map): the algorithm is not copied."""
    multi = build_model(cfg.model)
    teacher = multi.make_teacher()
    imp = Imported(cfg, multi.state_dict(), teacher.module.state_dict())
    one = select_modality(imp, name, "mem")
    single = build_model(one.cfg.model)
    assert type(single) is Data2Vec2Model
    single.load_state_dict(one.student)
    single_teacher = single.make_teacher()
    single_teacher.module.load_state_dict(one.teacher)
    batch = synthetic_batches(cfg.model.input, 2)[name]
    multi.eval(), single.eval()
    torch.manual_seed(5)  # the decoder's mask-slot noise comes from the global generator
    a = multi.pretrain_forward(batch, teacher, torch.Generator().manual_seed(3))
    torch.manual_seed(5)
    b = single.pretrain_forward(batch, single_teacher, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.loss, b.loss)
    assert a.logs[f"{name}/loss"] == b.logs["loss"]
    x = multi.extract_features(batch[multi.modalities[name].input_key], batch.get("padding_mask"), modality=name).x
    torch.testing.assert_close(x, single.extract_features(batch[single.modality.input_key],
                                                          batch.get("padding_mask")).x)


def test_loss_weight_scales_the_modalitys_loss(cfg):
    batch = synthetic_batches(cfg.model.input, 2)["text"]
    losses = []
    for weight in (1.0, 2.5):
        torch.manual_seed(0)
        model = build_model(_with_branch(cfg, "text", loss_weight=weight).model).eval()
        losses.append(model.pretrain_forward(batch, model.make_teacher(), torch.Generator().manual_seed(0)).loss)
    torch.testing.assert_close(losses[1], 2.5 * losses[0])


def test_a_step_trains_only_its_modality_and_the_shared_encoder(cfg):
    model = build_model(cfg.model)
    batch = synthetic_batches(cfg.model.input, 2)["image"]
    model.pretrain_forward(batch, model.make_teacher(), torch.Generator().manual_seed(0)).loss.backward()
    with_grad = {k.split(".")[0] + "." + k.split(".")[1] for k, p in model.named_parameters() if p.grad is not None}
    assert with_grad >= {"modalities.image", "decoders.image"}
    assert not any(k.endswith(("audio", "text")) for k in with_grad)
    assert any(p.grad is not None for p in model.encoder.parameters())


def test_bad_configs_name_the_field(cfg):
    with pytest.raises(ConfigError, match="model.decoder is set per modality"):
        build_model(dataclasses.replace(cfg.model, decoder=DecoderConfig(dim=8)))
    with pytest.raises(ConfigError, match="model.teacher.scope"):
        build_model(apply_overrides(cfg, ["model.teacher.scope=blocks"]).model)
    with pytest.raises(ConfigError, match="unique"):
        build_model(_with_branch(cfg, "text", name="image").model)
    with pytest.raises(ValueError, match="model.teacher.scope="):
        build_model(_with_branch(cfg, "text", teacher_scope="most").model)
    with pytest.raises(ValueError, match="no modality 'video'"):
        modality_model_config(cfg.model, "video")
    with pytest.raises(ValueError, match="one modality at a time"):
        build_finetuned(cfg.model, HeadConfig("image_classification", 3))


def test_modality_view_is_the_single_modality_run(cfg):
    one = modality_config(cfg, "audio")
    branch = next(b for b in cfg.model.input.branches if b.name == "audio")
    source = next(s for s in cfg.data.sources if s.name == "audio")
    assert one.model.input == branch.input and one.model.decoder == branch.decoder
    assert one.model.encoder == cfg.model.encoder
    assert one.model.teacher.scope == "context" and one.model.teacher.decay == cfg.model.teacher.decay
    assert one.data == source.data and one.train.batch_size == source.batch_size


def test_checkpoint_selection_errors(cfg):
    model = build_model(cfg.model)
    imp = Imported(cfg, model.state_dict(), None)
    with pytest.raises(ValueError, match="has no modality 'video'; it has image, audio, text"):
        pick_modality(imp, "video", "ckpt")
    with pytest.raises(ValueError, match="choose one with --modality"):
        require_one_modality(cfg, "ckpt")
    one = pick_modality(imp, "", "ckpt", kinds=("text",))  # a fine-tuning task picks its modality
    assert one.cfg.model.input.kind == "text" and one.teacher is None
    assert any("modality 'image'" in why for _, why in one.dropped)
    with pytest.raises(ValueError, match="single-modality 'text' model has no modality 'image'"):
        pick_modality(one, "image", "ckpt")
    assert pick_modality(one, "text", "ckpt") is one
    bad = Imported(cfg, {**model.state_dict(), "modalities.text.extra": torch.zeros(1)}, None)
    with pytest.raises(KeyError, match="unknown key 'modalities.text.extra'"):
        select_modality(bad, "text", "ckpt")


def test_pretrain_modality_gives_the_single_modality_baseline():
    import argparse

    from data2vec.cli.pretrain import resolve_config

    def args(preset, modality, *overrides):
        return argparse.Namespace(preset=preset, config=None, resume=False, init=None, out="x", modality=modality,
                                  overrides=list(overrides))

    joint = get_preset("data2vec2_multi_small")
    one = resolve_config(args("data2vec2_multi_small", "text", "train.max_steps=7"))
    assert one == dataclasses.replace(modality_config(joint, "text"),
                                      train=dataclasses.replace(modality_config(joint, "text").train, max_steps=7))
    with pytest.raises(ValueError, match="not a multimodal config"):
        resolve_config(args("data2vec2_text_tiny", "text"))
    with pytest.raises(ValueError, match="no modality 'video'"):
        resolve_config(args("data2vec2_multi_small", "video"))
