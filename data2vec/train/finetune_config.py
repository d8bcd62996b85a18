"""The one fine-tuning config: task, where the backbone comes from, model regularization,
labeled data (kinded per modality) and the training settings (named as pretraining's `train.*`).

Recipes (`data2vec.recipes`) are named `FinetuneConfig`s; `key=value` overrides edit them,
e.g. `train.lr=1e-3 data.label_frac=0.01 model.drop_path=0.1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from data2vec.config import LabeledDataConfig, register_kind  # noqa: F401  (re-exported; the data kinds register with it)

SCHEDULES = ("cosine", "tri_stage", "linear")
LOWER_IS_BETTER = ("wer", "cer", "mse", "loss")


@dataclass(frozen=True)
class FinetuneModelConfig:
    """How the pretrained backbone is regularized and read out."""

    pooling: Literal["mean", "cls"] = "mean"  # image classification: mean of the patch tokens + fc_norm, or "cls"
    head_dropout: float = 0.0
    drop_path: float = 0.0  # maximum, rising linearly over the blocks
    dropout: float = 0.0
    activation_dropout: float = 0.0
    layer_drop: float = 0.0
    freeze_feature_extractor: bool = False  # speech: the conv stack gets no gradients
    mask_prob: float = 0.0  # speech: time masks on the features (fairseq wav2vec_ctc)
    mask_length: int = 10
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 64


@dataclass(frozen=True)
class FinetuneTrainConfig:
    """Optimization and run settings; the names match pretraining's `train.*`."""

    lr: float = 1e-3
    min_lr: float = 0.0  # cosine: the final lr; tri_stage: the final lr (must be > 0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.05
    layer_decay: float = 1.0  # lr of block i (1-based, of N) scaled by layer_decay^(N + 1 - i)
    schedule: Literal["cosine", "tri_stage", "linear"] = "cosine"  # linear: to 0
    warmup_frac: float = 0.1  # of the updates
    hold_frac: float = 0.0  # tri_stage: updates at the peak lr after warm-up
    max_steps: int = 0  # optimizer updates; 0: `epochs` passes over the training set
    epochs: int = 30
    batch_size: int = 32  # samples per micro-batch (speech: utterances at most)
    grad_accum: int = 1
    clip_norm: float = 0.0  # 0 disables
    label_smoothing: float = 0.0
    freeze_backbone_steps: int = 0  # only the head trains for these first updates
    bf16: bool | Literal["auto"] = "auto"  # true | false | auto: bf16 autocast where the hardware has it
    compile: bool | Literal["auto"] = False  # true | false | auto: torch.compile the Transformer blocks
    seed: int = 1
    device: str = "auto"
    log_every: int = 10
    eval_every: int = 0  # updates between evaluations; 0: once per epoch
    ckpt_every: int = 0  # updates between checkpoints; 0: at every evaluation
    select_metric: str = ""  # validation metric that picks the kept weights; "": the task's


@dataclass(frozen=True)
class FinetuneConfig:
    task: str = "image-classification"  # a task a modality registers (`data2vec finetune --help` lists them)
    init: str = ""  # pretrained weights in any format the loader reads; "": random weights of `preset`
    preset: str = "data2vec2_image_fmnist"  # the architecture when `init` is empty
    weights: Literal["student", "teacher", "random"] = "student"  # student | teacher (EMA) weights of `init` | random: `init`'s architecture only
    modality: str = ""  # the modality of a multimodal `init`; "": the one whose input the task reads
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    data: LabeledDataConfig = field(default_factory=LabeledDataConfig)
    train: FinetuneTrainConfig = field(default_factory=FinetuneTrainConfig)
