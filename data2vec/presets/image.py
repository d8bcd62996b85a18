"""Image presets: Meta's data2vec 2.0 ViT configs and small CPU presets for 28x28 images."""

from __future__ import annotations

from data2vec.config import (
    DecoderConfig, EncoderConfig, LossConfig, ModelConfig, PretrainConfig, TargetConfig, TeacherConfig, TrainConfig,
)
from data2vec.data.image import FASHION_MNIST_DIR, ImageDataConfig
from data2vec.modalities.image import ImageInputConfig
from data2vec.presets import register_preset, short_run_teacher, tiny_teacher

FASHION_MNIST_TRAIN = str(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")
# Fashion-MNIST training-set pixel statistics.
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)


@register_preset("data2vec2_image_base", "data2vec 2.0 ViT-B/16 on ImageNet, reference hyperparameters (16 GPUs)")
def image_base() -> PretrainConfig:
    # examples/data2vec/config/v2/base_images_only_task.yaml: 2 prenet + 10 shared blocks.
    return PretrainConfig(
        model=ModelConfig(
            input=ImageInputConfig(image_size=224, patch_size=16, in_chans=3, prenet_depth=2,
                                   mask_prob=0.8, mask_prob_adjust=0.07, mask_length=3),
            encoder=EncoderConfig(dim=768, depth=10, num_heads=12, norm_eps=1e-6),
            decoder=DecoderConfig(dim=768, layers=6, kernel=3, groups=16, residual=True, input_dropout=0.0),
            targets=TargetConfig(top_k=10, instance_norm_layers=True, layer_norm_final=True),
            loss=LossConfig(beta=0.0, scale=None, cls_weight=0.01),
            teacher=TeacherConfig(decay=0.9998, end_decay=0.99999, anneal_steps=100_000, scope="all"),
            clone_batch=16,
        ),
        data=ImageDataConfig(path="", crop_scale_min=0.2, hflip=True),
        # 16 images per GPU on 16 GPUs; other world sizes accumulate or split to keep 256.
        train=TrainConfig(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05, warmup_steps=50_040, max_steps=375_300,
                          batch_size=256, micro_batch=16, clip_norm=4.0, log_every=100,
                          ckpt_every=5000),
    )


@register_preset("data2vec2_image_large", "data2vec 2.0 ViT-L/16 on ImageNet, reference hyperparameters (16 GPUs)")
def image_large() -> PretrainConfig:
    base = image_base()
    return PretrainConfig(
        model=ModelConfig(
            input=ImageInputConfig(image_size=224, patch_size=16, in_chans=3, prenet_depth=0,
                                   mask_prob=0.75, mask_prob_adjust=0.1, mask_length=3),
            encoder=EncoderConfig(dim=1024, depth=24, num_heads=16, norm_eps=1e-6),
            decoder=DecoderConfig(dim=1024, layers=3, kernel=5, groups=16, residual=True, input_dropout=0.0),
            targets=TargetConfig(top_k=18, instance_norm_layers=True, layer_norm_final=True),
            loss=LossConfig(cls_weight=0.01),
            teacher=TeacherConfig(decay=0.9998, end_decay=0.99999, anneal_steps=150_000, scope="all"),
            clone_batch=16,
        ),
        data=base.data,
        train=TrainConfig(lr=4e-4, betas=(0.9, 0.95), weight_decay=0.05, warmup_steps=50_040, max_steps=375_300,
                          batch_size=128, micro_batch=8, clip_norm=4.0, log_every=100, ckpt_every=5000,
                          parallel="fsdp"),
    )


def _small_image_model(dim: int, depth: int, heads: int, prenet: int, clone: int, teacher: TeacherConfig) -> ModelConfig:
    """A ViT for 28x28 grayscale images: 4x4 patches on a 7x7 grid."""
    return ModelConfig(
        input=ImageInputConfig(image_size=28, patch_size=4, in_chans=1, prenet_depth=prenet,
                               mask_prob=0.6, mask_prob_adjust=0.1, mask_length=3),
        encoder=EncoderConfig(dim=dim, depth=depth, num_heads=heads, norm_eps=1e-6),
        decoder=DecoderConfig(dim=dim, layers=3, kernel=3, groups=8, residual=True),
        targets=TargetConfig(top_k=depth, instance_norm_layers=True, layer_norm_final=True),
        loss=LossConfig(cls_weight=0.01),
        teacher=teacher,
        clone_batch=clone,
    )


@register_preset("data2vec2_image_fmnist", "small data2vec 2.0 ViT for Fashion-MNIST on a 2-core CPU (the demo)")
def image_fmnist() -> PretrainConfig:
    return PretrainConfig(
        # Tuned for ~6 minutes on 2 CPU cores (train.bf16=auto: fp32 on CPUs without BF16 instructions).
        model=_small_image_model(dim=128, depth=5, heads=4, prenet=1, clone=4,
                                 teacher=short_run_teacher(450, "all")),
        data=ImageDataConfig(path=FASHION_MNIST_TRAIN, crop_scale_min=0.35, hflip=True, mean=FMNIST_MEAN, std=FMNIST_STD),
        train=TrainConfig(lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05, warmup_steps=40, max_steps=450,
                          batch_size=64, clip_norm=4.0, log_every=25, ckpt_every=150, time_limit_min=9.0),
    )


@register_preset("data2vec2_image_tiny", "tiny data2vec 2.0 ViT for 28x28 images (tests, smoke runs)")
def image_tiny() -> PretrainConfig:
    return PretrainConfig(
        model=_small_image_model(dim=32, depth=2, heads=2, prenet=1, clone=2, teacher=tiny_teacher("all")),
        data=ImageDataConfig(path=FASHION_MNIST_TRAIN, crop_scale_min=0.35, hflip=True, mean=FMNIST_MEAN, std=FMNIST_STD),
        train=TrainConfig(lr=1e-3, warmup_steps=5, max_steps=50, batch_size=16, clip_norm=4.0,
                          log_every=5, ckpt_every=25),
    )
