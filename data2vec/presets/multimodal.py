"""Multimodal presets: one shared Transformer pretrained jointly on Fashion-MNIST images, the
synthesized speech corpus and the fortunes text, each modality as its small single-modality
preset has it (input encoder, masking, decoder, targets, loss, masked views, data, batch size).

`data2vec pretrain --preset data2vec2_multi_small --modality NAME` trains one modality of it
alone: the single-modality baseline with the same architecture.
"""

from __future__ import annotations

import dataclasses

from data2vec.algorithms.multimodal import ModalityBranch, ModalitySource, MultiDataConfig, MultiInputConfig
from data2vec.config import EncoderConfig, ModelConfig, PretrainConfig, TeacherConfig, TrainConfig
from data2vec.presets import register_preset, short_run_teacher, tiny_teacher
from data2vec.presets.audio import audio_small, audio_tiny
from data2vec.presets.image import image_fmnist, image_tiny
from data2vec.presets.text import text_fortunes, text_tiny


def modality_of(name: str, single: PretrainConfig, depth: int) -> tuple[ModalityBranch, ModalitySource]:
    """A single-modality preset's modality parts and data, its targets averaging all `depth`
    shared blocks."""
    m = single.model
    branch = ModalityBranch(name=name, input=m.input, decoder=m.decoder,
                            targets=dataclasses.replace(m.targets, top_k=depth), loss=m.loss,
                            clone_batch=m.clone_batch, teacher_scope=m.teacher.scope, teacher_copied=m.teacher.copied)
    return branch, ModalitySource(name=name, data=single.data, batch_size=single.train.batch_size)


def multimodal(singles: dict[str, PretrainConfig], encoder: EncoderConfig, teacher: TeacherConfig,
               train: TrainConfig, cycle: tuple[str, ...] = ()) -> PretrainConfig:
    """A joint run over the modalities of `singles` ({name: single-modality preset})."""
    parts = [modality_of(name, cfg, encoder.depth) for name, cfg in singles.items()]
    return PretrainConfig(
        model=ModelConfig(input=MultiInputConfig(branches=tuple(b for b, _ in parts)), encoder=encoder,
                          teacher=teacher),
        data=MultiDataConfig(sources=tuple(s for _, s in parts), cycle=cycle),
        train=train,
    )


@register_preset("data2vec2_multi_small",
                 "one small data2vec 2.0 Transformer pretrained jointly on images, speech and text (2-core CPU)")
def multi_small() -> PretrainConfig:
    steps = 900  # 300 per modality
    return multimodal(
        {"image": image_fmnist(), "audio": audio_small(), "text": text_fortunes()},
        # Post-LN as all three small presets; dropout off (text keeps its embedding dropout).
        EncoderConfig(dim=128, depth=4, num_heads=4, norm_eps=1e-5),
        short_run_teacher(steps, "all"),
        TrainConfig(lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05, warmup_steps=50, max_steps=steps,
                    batch_size=16, clip_norm=1.0, log_every=10, ckpt_every=150),
        cycle=("image", "audio", "text"),
    )


@register_preset("data2vec2_multi_tiny", "tiny joint image + speech + text data2vec 2.0 model (tests, smoke runs)")
def multi_tiny() -> PretrainConfig:
    return multimodal(
        {"image": image_tiny(), "audio": audio_tiny(), "text": text_tiny()},
        EncoderConfig(dim=32, depth=2, num_heads=2, norm_eps=1e-5),
        tiny_teacher("all"),
        TrainConfig(lr=2e-3, betas=(0.9, 0.98), eps=1e-6, warmup_steps=3, max_steps=30, batch_size=8,
                    clip_norm=1.0, log_every=2, ckpt_every=15),
    )
