"""Time-series presets: small data2vec 2.0 models for multichannel series on a 2-core CPU.

The small presets read the built-in Japanese Vowels training set (12 channels, 7-26 frames per
series); any `.ts` file works via `data.path=...` with `model.input.channels` and
`data.mean`/`data.std` set for it (empty statistics: those of the file read).
"""

from __future__ import annotations

from data2vec.config import DecoderConfig, EncoderConfig, LossConfig, ModelConfig, PretrainConfig, TargetConfig, \
    TeacherConfig, TrainConfig
from data2vec.modalities.timeseries import VOWELS_TRAIN, SeriesDataConfig, SeriesInputConfig
from data2vec.presets import register_preset, short_run_teacher, tiny_teacher

# Per-channel mean and std of the Japanese Vowels training set, from
# python -c "from data2vec.modalities.timeseries import *; print(channel_stats(read_ts(VOWELS_TRAIN).series))"
VOWELS_MEAN = (0.8691, -0.5545, 0.2461, -0.2673, 0.219, -0.2105, -0.1741, -0.0517, -0.2049, -0.1812, -0.0236, 0.0862)
VOWELS_STD = (0.4877, 0.3912, 0.3009, 0.3059, 0.2691, 0.1683, 0.1612, 0.1884, 0.1877, 0.1169, 0.0976, 0.1276)
VOWELS_DATA = SeriesDataConfig(path=VOWELS_TRAIN, mean=VOWELS_MEAN, std=VOWELS_STD)


def _series_model(dim: int, depth: int, heads: int, clone: int, teacher: TeacherConfig) -> ModelConfig:
    """One token per frame (the frames are already features), the 2.0 recipe scaled down."""
    return ModelConfig(
        input=SeriesInputConfig(channels=12, patch_size=1, prenet_depth=0, mask_prob=0.5, mask_prob_adjust=0.05,
                                mask_length=3, mask_noise_std=0.01),
        encoder=EncoderConfig(dim=dim, depth=depth, num_heads=heads, dropout=0.0, attn_dropout=0.0, norm_eps=1e-5),
        decoder=DecoderConfig(dim=dim, layers=2, kernel=3, groups=8, residual=True),
        targets=TargetConfig(top_k=depth, instance_norm_layers=True),
        loss=LossConfig(beta=0.0, scale=None),
        teacher=teacher,
        clone_batch=clone,
    )


@register_preset("data2vec2_series_small", "small data2vec 2.0 time-series model for Japanese Vowels on a 2-core CPU")
def series_small() -> PretrainConfig:
    return PretrainConfig(
        model=_series_model(dim=128, depth=4, heads=4, clone=4, teacher=short_run_teacher(600, "all")),
        data=VOWELS_DATA,
        train=TrainConfig(lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, warmup_steps=40, max_steps=600,
                          batch_size=32, clip_norm=1.0, log_every=20, ckpt_every=200),
    )


@register_preset("data2vec2_series_tiny", "tiny data2vec 2.0 time-series model (tests, smoke runs)")
def series_tiny() -> PretrainConfig:
    return PretrainConfig(
        model=_series_model(dim=32, depth=2, heads=2, clone=2, teacher=tiny_teacher("all")),
        data=VOWELS_DATA,
        train=TrainConfig(lr=2e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, warmup_steps=2, max_steps=20,
                          batch_size=16, clip_norm=1.0, log_every=2, ckpt_every=10),
    )
