"""Fine-tuned models as a value: a pretrained backbone config plus a head config.

Our fine-tuning runs and imported fine-tuned checkpoints (fairseq `wav2vec_ctc`,
`mae_image_classification`, `data2vec_text_classification`, BEiT fine-tuned files, Hugging
Face `*ForCTC`, `*ForSequenceClassification`, `*ForImageClassification`) all become an
`EncoderWithHead` built by `data2vec.models.build_model(model_cfg, head_cfg)`; its state dict keys are
`modality.*`, `encoder.*` and `head.*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from torch import nn

from data2vec.config import ModelConfig
from data2vec.heads.classification import MeanPoolClassifier, PooledNormClassifier
from data2vec.heads.ctc import CTCHead
from data2vec.heads.sequence import FirstTokenHead
from data2vec.heads.token import TokenHead

HEAD_KINDS = ("ctc", "image_classification", "sequence_classification", "audio_classification",
              "token_classification")


@dataclass(frozen=True)
class HeadConfig:
    """kind: one of HEAD_KINDS; num_outputs: CTC vocabulary size, classes (1 for regression).

    `final_norm`: keep the pre-LN encoder's final LayerNorm (BEiT fine-tuning with mean
    pooling drops it and normalizes the pooled vector with `fc_norm` instead).
    `pooling`: "mean" or "cls" (image classification); `dropout`: before the head's projection.
    """

    kind: str
    num_outputs: int
    final_norm: bool = False
    pooling: str = "mean"
    dropout: float = 0.0


def make_head(model_cfg: ModelConfig, head: HeadConfig, num_extra_tokens: int) -> nn.Module:
    """A freshly initialised task head for an encoder of `model_cfg`."""
    from data2vec.algorithms.common import init_bert_params

    dim, n = model_cfg.encoder.dim, head.num_outputs
    if head.kind == "ctc":
        return CTCHead(dim, n, head.dropout)
    if head.kind == "image_classification":
        return PooledNormClassifier(dim, n, num_extra_tokens, model_cfg.encoder.norm_eps, head.pooling, head.dropout)
    if head.kind == "audio_classification":
        return MeanPoolClassifier(dim, n, head.dropout)
    text_head = TokenHead(dim, n, head.dropout) if head.kind == "token_classification" else FirstTokenHead(dim, n, head.dropout)
    text_head.apply(init_bert_params)  # as fairseq's RoBERTa heads
    return text_head
