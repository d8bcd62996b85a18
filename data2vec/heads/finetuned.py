"""Fine-tuned models as a value: a pretrained backbone config plus a head config.

Imported fine-tuned checkpoints (fairseq `wav2vec_ctc`, `mae_image_classification`,
`data2vec_text_classification`, BEiT fine-tuned files, Hugging Face `*ForCTC`,
`*ForSequenceClassification`, `*ForImageClassification`) all become an `EncoderWithHead`
built by `build_finetuned(model_cfg, head_cfg)`; its state dict keys are `modality.*`,
`encoder.*` and `head.*`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from data2vec.config import ModelConfig
from data2vec.heads.classification import PooledNormClassifier
from data2vec.heads.ctc import CTCHead
from data2vec.heads.sequence import EncoderWithHead, FirstTokenHead

HEAD_KINDS = ("ctc", "image_classification", "sequence_classification")


@dataclass(frozen=True)
class HeadConfig:
    """kind: one of HEAD_KINDS; num_outputs: CTC vocabulary size, classes (1 for regression).

    `final_norm`: keep the pre-LN encoder's final LayerNorm (BEiT fine-tuning with mean
    pooling drops it and normalizes the pooled vector with `fc_norm` instead).
    """

    kind: str
    num_outputs: int
    final_norm: bool = False


def build_finetuned(model_cfg: ModelConfig, head: HeadConfig) -> EncoderWithHead:
    """Backbone of `model_cfg` (its pretraining decoder/head left out) with the task head."""
    from data2vec.train.pretrain import build_model  # the trainer imports the heads

    if head.kind not in HEAD_KINDS:
        raise ValueError(f"head kind {head.kind!r}; expected one of {HEAD_KINDS}")
    model = build_model(model_cfg)
    dim = model_cfg.encoder.dim
    if head.kind == "ctc":
        task_head: nn.Module = CTCHead(dim, head.num_outputs)
    elif head.kind == "image_classification":
        task_head = PooledNormClassifier(dim, head.num_outputs, model.modality.num_extra_tokens,
                                         model_cfg.encoder.norm_eps)
    else:
        task_head = FirstTokenHead(dim, head.num_outputs)
    if not head.final_norm:
        model.encoder.norm = None
    return EncoderWithHead(model.modality, model.encoder, task_head)
