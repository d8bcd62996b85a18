"""Fine-tuned models as a value: a pretrained backbone config plus a head config.

Our fine-tuning runs and imported fine-tuned checkpoints (fairseq `wav2vec_ctc`,
`mae_image_classification`, `data2vec_text_classification`, BEiT fine-tuned files, Hugging
Face `*ForCTC`, `*ForSequenceClassification`, `*ForImageClassification`) all become an
`EncoderWithHead` built by `build_finetuned(model_cfg, head_cfg)`; its state dict keys are
`modality.*`, `encoder.*` and `head.*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor, nn

from data2vec.config import ModelConfig
from data2vec.heads.classification import MeanPoolClassifier, PooledNormClassifier
from data2vec.heads.ctc import CTCHead
from data2vec.heads.model import EncoderWithHead, FeatureMaskConfig
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


def build_finetuned(model_cfg: ModelConfig, head: HeadConfig, backbone_state: Optional[dict[str, Tensor]] = None,
                    freeze_local: bool = False, feature_mask: Optional[FeatureMaskConfig] = None) -> EncoderWithHead:
    """Backbone of `model_cfg` (its pretraining decoder/head left out) with the task head.

    `backbone_state`: pretraining weights (a state dict of `build_model(model_cfg)`) loaded
    before the pretraining parts are dropped.
    """
    from data2vec.train.pretrain import build_model  # the trainer imports the heads

    if head.kind not in HEAD_KINDS:
        raise ValueError(f"head kind {head.kind!r}; expected one of {HEAD_KINDS}")
    model = build_model(model_cfg)
    if backbone_state is not None:
        try:
            model.load_state_dict(backbone_state)
        except RuntimeError as e:
            raise ValueError(f"the pretrained weights do not fit the model config: {e}") from e
    task_head = make_head(model_cfg, head, model.modality.num_extra_tokens)
    if not head.final_norm:
        model.encoder.norm = None
    return EncoderWithHead(model.modality, model.encoder, task_head, freeze_local, feature_mask)
