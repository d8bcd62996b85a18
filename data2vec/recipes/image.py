"""Image classification recipes: Meta's data2vec 2.0 ImageNet fine-tuning (reference 3.1) and
small CPU recipes for 28x28 images."""

from __future__ import annotations

from data2vec.data.image import FASHION_MNIST_DIR
from data2vec.recipes import register_recipe
from data2vec.train.finetune_config import FinetuneConfig, FinetuneModelConfig, FinetuneTrainConfig
from data2vec.train.finetune_image import ImageLabeledData

FMNIST_TRAIN = str(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")
FMNIST_TEST = str(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")


def _imagenet(preset: str, lr: float, min_lr: float, layer_decay: float, drop_path: float, updates: int,
              clip: float) -> FinetuneConfig:
    # mae_imagenet_*clean.yaml: batch 32 x 16 GPUs = 512 (here 32 x grad_accum 16), Adam
    # (0.9, 0.95), weight decay 0.05, cosine after 16k warm-up updates, label smoothing 0.1,
    # mixup 0.7 / cutmix 1.0 with probability 0.9, RandAugment m9; 2502 updates per epoch.
    return FinetuneConfig(
        task="image-classification", preset=preset,
        model=FinetuneModelConfig(pooling="mean", drop_path=drop_path),
        data=ImageLabeledData(train="", valid="", valid_size=10_000, crop_scale_min=0.08, hflip=True,
                              randaug_magnitude=9, mixup=0.7, cutmix=1.0, mix_prob=0.9),
        train=FinetuneTrainConfig(lr=lr, min_lr=min_lr, betas=(0.9, 0.95), weight_decay=0.05, layer_decay=layer_decay,
                                  schedule="cosine", warmup_frac=16_000 / updates, max_steps=updates, batch_size=32,
                                  grad_accum=16, clip_norm=clip, label_smoothing=0.1, log_every=100,
                                  eval_every=2502, ckpt_every=2502),
    )


@register_recipe("image_vit_base_imagenet", "data2vec 2.0 ViT-B ImageNet fine-tuning (fairseq mae_imagenet_clean)")
def vit_base_imagenet() -> FinetuneConfig:
    return _imagenet("data2vec2_image_base", lr=1e-3, min_lr=1e-6, layer_decay=0.65, drop_path=0.1, updates=250_200,
                     clip=0.0)


@register_recipe("image_vit_large_imagenet", "data2vec 2.0 ViT-L ImageNet fine-tuning (fairseq mae_imagenet_large_clean)")
def vit_large_imagenet() -> FinetuneConfig:
    return _imagenet("data2vec2_image_large", lr=5e-4, min_lr=1e-7, layer_decay=0.75, drop_path=0.2, updates=125_200,
                     clip=4.0)


@register_recipe("image_fmnist_small", "small ViT on Fashion-MNIST-sized data, 2-core CPU (learns from ~600 labels)")
def fmnist_small() -> FinetuneConfig:
    return FinetuneConfig(
        task="image-classification", preset="data2vec2_image_fmnist",
        model=FinetuneModelConfig(pooling="mean", drop_path=0.1),
        data=ImageLabeledData(train=FMNIST_TRAIN, test=FMNIST_TEST, valid_size=1000, crop_scale_min=0.6, hflip=True),
        train=FinetuneTrainConfig(lr=1e-3, min_lr=1e-5, betas=(0.9, 0.999), weight_decay=0.05, layer_decay=0.75,
                                  schedule="cosine", warmup_frac=0.1, epochs=40, batch_size=32, clip_norm=1.0,
                                  label_smoothing=0.1, log_every=10),
    )


@register_recipe("image_tiny", "tiny ViT for 28x28 images (tests, smoke runs)")
def image_tiny() -> FinetuneConfig:
    return FinetuneConfig(
        task="image-classification", preset="data2vec2_image_tiny",
        model=FinetuneModelConfig(pooling="mean", drop_path=0.1),
        data=ImageLabeledData(train=FMNIST_TRAIN, test=FMNIST_TEST, valid_size=100, crop_scale_min=0.6,
                              randaug_magnitude=5, mixup=0.8, cutmix=1.0, mix_prob=0.5, label_frac=0.005),
        train=FinetuneTrainConfig(lr=2e-3, weight_decay=0.05, layer_decay=0.75, warmup_frac=0.1, epochs=2,
                                  batch_size=16, clip_norm=1.0, label_smoothing=0.1, log_every=2),
    )
