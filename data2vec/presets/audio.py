"""Audio presets: Meta's data2vec 2.0 speech base config and small CPU presets.

The small presets read `runs/speech/train.tsv`, the corpus written by
`data2vec speech-corpus --out runs/speech`; any folder or manifest works via `data.path=...`.
"""

from __future__ import annotations

from data2vec.config import (
    DecoderConfig, EncoderConfig, LossConfig, ModelConfig, PretrainConfig, TargetConfig, TeacherConfig, TrainConfig,
)
from data2vec.data.audio_pretrain import AudioDataConfig
from data2vec.modalities.audio import AudioInputConfig
from data2vec.presets import register_preset, short_run_teacher, tiny_teacher

SPEECH_CORPUS_TRAIN = "runs/speech/train.tsv"


@register_preset("data2vec2_audio_base", "data2vec 2.0 speech base on LibriSpeech, reference hyperparameters (8 GPUs)")
def audio_base() -> PretrainConfig:
    # examples/data2vec/config/v2/base_audio_only_task.yaml (reference sections 2.1, 2.6, 2.9).
    return PretrainConfig(
        model=ModelConfig(
            input=AudioInputConfig(conv_channels=512, conv_kernels=(10, 3, 3, 3, 3, 2, 2),
                                   conv_strides=(5, 2, 2, 2, 2, 2, 2), conv_pos_depth=5, conv_pos_width=95,
                                   conv_pos_groups=16, prenet_depth=0, mask_prob=0.5, mask_prob_adjust=0.05,
                                   mask_length=5, mask_noise_std=0.01, alibi_scale_init=1.0),
            encoder=EncoderConfig(dim=768, depth=12, num_heads=12, dropout=0.1, attn_dropout=0.1,
                                  activation_dropout=0.0, layer_drop=0.05, norm_eps=1e-5),
            decoder=DecoderConfig(dim=384, layers=4, kernel=7, groups=16, residual=True, projection_layers=1,
                                  input_dropout=0.1),
            targets=TargetConfig(top_k=8, instance_norm_layers=True),
            loss=LossConfig(beta=0.0, scale=None),
            teacher=TeacherConfig(decay=0.999, end_decay=0.99999, anneal_steps=75_000, scope="context"),
            clone_batch=8,
            # fairseq's Data2VecMultiConfig defaults, which the audio config keeps.
            min_target_std=0.1, min_pred_std=0.01, collapse_check_after=5000,
        ),
        data=AudioDataConfig(path="", max_sample_size=320_000, min_sample_size=32_000,
                             max_samples_per_batch=1_000_000, normalize=True, buckets_per_step=8),
        train=TrainConfig(lr=7.5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, decay_all_params=True,
                          warmup_steps=8000,
                          max_steps=400_000, batch_size=512, clip_norm=0.0, log_every=100,
                          ckpt_every=5000),
    )


def _small_audio_model(channels: int, dim: int, depth: int, heads: int, clone: int, teacher: TeacherConfig,
                       pos_width: int = 95) -> ModelConfig:
    """The base architecture scaled down; 20 ms frames as in the reference."""
    return ModelConfig(
        input=AudioInputConfig(conv_channels=channels, conv_pos_depth=5, conv_pos_width=pos_width,
                               conv_pos_groups=16, prenet_depth=0, mask_prob=0.5, mask_prob_adjust=0.05,
                               mask_length=5),
        encoder=EncoderConfig(dim=dim, depth=depth, num_heads=heads, dropout=0.0, attn_dropout=0.0,
                              layer_drop=0.0, norm_eps=1e-5),
        decoder=DecoderConfig(dim=dim, layers=3, kernel=7, groups=16, residual=True, input_dropout=0.0),
        targets=TargetConfig(top_k=depth, instance_norm_layers=True),
        teacher=teacher,
        clone_batch=clone,
    )


@register_preset("data2vec2_audio_small", "small data2vec 2.0 speech model for the synthesized corpus on a 2-core CPU")
def audio_small() -> PretrainConfig:
    return PretrainConfig(
        # Positional convs of kernel 3 (receptive field 11 frames, 0.2 s) instead of the reference's
        # 19 (91 frames, 1.8 s): on utterances of 1-3 s the wide stack sees both ends of every
        # utterance, and pretraining fell into a shortcut where the targets are a function of the
        # distance to the edges (95% of their variance; frozen features near chance on spoken
        # words) in 5 of 6 runs. docs/benchmarks-payoff.md, section 5.4.
        model=_small_audio_model(channels=128, dim=128, depth=4, heads=4, clone=8,
                                   teacher=short_run_teacher(1000, "context"), pos_width=15),
        data=AudioDataConfig(path=SPEECH_CORPUS_TRAIN, max_sample_size=48_000, min_sample_size=8_000,
                             max_samples_per_batch=16 * 48_000, normalize=True),
        train=TrainConfig(lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, decay_all_params=True,
                          warmup_steps=50, max_steps=1000,
                          batch_size=16, clip_norm=1.0, log_every=10, ckpt_every=100),
    )


@register_preset("data2vec2_audio_tiny", "tiny data2vec 2.0 speech model (tests, smoke runs)")
def audio_tiny() -> PretrainConfig:
    return PretrainConfig(
        model=_small_audio_model(channels=32, dim=32, depth=2, heads=2, clone=2, teacher=tiny_teacher("context")),
        data=AudioDataConfig(path=SPEECH_CORPUS_TRAIN, max_sample_size=32_000, min_sample_size=4_000,
                             max_samples_per_batch=8 * 32_000, normalize=True),
        train=TrainConfig(lr=2e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, decay_all_params=True,
                          warmup_steps=2, max_steps=20,
                          batch_size=8, clip_norm=1.0, log_every=2, ckpt_every=10),
    )
