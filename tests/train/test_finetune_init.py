"""Fine-tuning really starts from the pretrained weights, and a from-scratch run freezes nothing
random: the two conditions a pretrained-vs-scratch comparison rests on."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from data2vec.config import apply_overrides
from data2vec.presets import get_preset
from data2vec.recipes import get_recipe
from data2vec.train.finetune_run import build_run, scratch_policy
from data2vec import load_model
from data2vec.train.pretrain import pretrain


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """28x28 grayscale PNGs in two class folders."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def checkpoint(folder, tmp_path_factory):
    """A few data2vec 2.0 updates of the tiny image preset: weights that differ from any init."""
    run = tmp_path_factory.mktemp("pre") / "run"
    cfg = apply_overrides(get_preset("data2vec2_image_tiny"), [
        f"data.path={folder}", "train.max_steps=3", "train.batch_size=8", "train.device=cpu", "train.bf16=false"])
    return pretrain(cfg, run, progress=False)["checkpoint"]


def _finetune_cfg(folder, checkpoint, weights):
    return apply_overrides(get_recipe("image_tiny"), [
        f"init={checkpoint}", f"weights={weights}", f"data.train={folder}", "data.test=", "data.valid_size=4",
        "data.label_frac=1.0", "train.device=cpu"])


def test_features_before_the_first_update_are_the_checkpoints(folder, checkpoint):
    x = torch.randn(3, 1, 28, 28)
    _, model, _ = build_run(_finetune_cfg(folder, checkpoint, "student"))
    model.eval()
    with torch.no_grad():
        got, _ = model.features(x)
        want = load_model(checkpoint, "student").model.extract_features(x).x
    torch.testing.assert_close(got, want)


def test_teacher_and_random_weights_are_what_they_say(folder, checkpoint):
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        _, teacher, _ = build_run(_finetune_cfg(folder, checkpoint, "teacher"))
        want = load_model(checkpoint, "teacher").model.extract_features(x).x
        torch.testing.assert_close(teacher.eval().features(x)[0], want)
        _, scratch, _ = build_run(_finetune_cfg(folder, checkpoint, "random"))
        student = load_model(checkpoint, "student").model.extract_features(x).x
        assert not torch.allclose(scratch.eval().features(x)[0], student, atol=1e-3)


def test_from_scratch_runs_freeze_nothing_random():
    recipe = get_recipe("ctc_10m")
    assert recipe.model.freeze_feature_extractor and recipe.train.freeze_backbone_steps > 0
    pretrained = dataclasses.replace(recipe, init="runs/pre/checkpoints/last.pt")
    assert scratch_policy(pretrained) is pretrained  # pretrained runs keep the recipe
    for scratch in (recipe, dataclasses.replace(pretrained, weights="random")):
        cfg = scratch_policy(scratch)
        assert not cfg.model.freeze_feature_extractor and cfg.train.freeze_backbone_steps == 0
        assert dataclasses.replace(cfg, model=recipe.model, train=recipe.train) == scratch  # nothing else changes


def test_a_frozen_feature_extractor_is_the_only_frozen_part(folder, checkpoint):
    cfg = apply_overrides(_finetune_cfg(folder, checkpoint, "student"), ["model.freeze_feature_extractor=true"])
    _, model, _ = build_run(cfg)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("modality.local_encoder.") for n in frozen)
