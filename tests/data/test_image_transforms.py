"""Image augmentation as Meta's recipes: bicubic RandomResizedCrop, BEiT's ColorJitter(0.4, 0.4, 0.4)."""

import pytest
import torch
from torchvision.transforms import v2

from data2vec.data.image import ImageDataConfig, build_image_data, train_transform
from data2vec.presets import get_preset


def _ops(tf):
    return list(tf.transforms)


def test_crop_is_bicubic_and_jitter_is_off_by_default():
    ops = _ops(train_transform(28, 0.35, True, (0.5,), (0.5,)))
    crop = next(o for o in ops if isinstance(o, v2.RandomResizedCrop))
    assert crop.interpolation == v2.InterpolationMode.BICUBIC
    assert not any(isinstance(o, v2.ColorJitter) for o in ops)


def test_color_jitter_comes_first_and_changes_rgb_images():
    tf = train_transform(16, 1.0, False, (0.5,) * 3, (0.5,) * 3, color_jitter=0.4)
    jitter = _ops(tf)[0]
    assert isinstance(jitter, v2.ColorJitter)
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.6, 1.4) and jitter.hue is None
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    outs = [tf(img) for _ in range(4)]
    assert not torch.equal(outs[0], outs[1])


def test_beit_presets_jitter_and_keep_min_lr_as_beit():
    for name in ("data2vec_image_base", "data2vec_image_large"):
        cfg = get_preset(name)
        assert cfg.data.color_jitter == 0.4 and cfg.train.min_lr == 1e-5
    assert get_preset("data2vec2_image_base").data.color_jitter == 0.0  # MAE/2.0: crop and flip only


def test_negative_jitter_is_an_error_naming_the_field():
    cfg = get_preset("data2vec_image_tiny")
    with pytest.raises(ValueError, match="data.color_jitter"):
        build_image_data(ImageDataConfig(path="x", color_jitter=-1.0, mean=(0.5,), std=(0.5,)), cfg.model.input,
                         cfg.train)
