"""Models from configs: the pretraining model of a `ModelConfig` and fine-tuned models (backbone
plus task head). Below both the trainer (`train/`) and checkpoint I/O (`checkpoints/`), which
both build models and must not import each other to do so."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from data2vec.algorithms.data2vec1 import Data2Vec1Model
from data2vec.algorithms.data2vec2 import Data2Vec2Model
from data2vec.algorithms.multimodal import MultimodalModel, is_multimodal
from data2vec.config import ModelConfig
from data2vec.heads.finetuned import HEAD_KINDS, HeadConfig, make_head
from data2vec.heads.model import EncoderWithHead, FeatureMaskConfig

MODELS = {1: Data2Vec1Model, 2: Data2Vec2Model}


def build_model(cfg: ModelConfig, head: Optional[HeadConfig] = None) -> nn.Module:
    """The pretraining model for `cfg.version` (1 = data2vec 1.0, 2 = data2vec 2.0; a multimodal
    `model.input` gives the joint 2.0 model), or with `head` the fine-tuned model
    `build_finetuned(cfg, head)`."""
    if head is not None:
        return build_finetuned(cfg, head)
    if is_multimodal(cfg):
        return MultimodalModel(cfg)
    if cfg.version not in MODELS:
        raise ValueError(f"model.version={cfg.version} is not supported; expected one of {sorted(MODELS)}")
    return MODELS[cfg.version](cfg)


def build_finetuned(model_cfg: ModelConfig, head: HeadConfig, backbone_state: Optional[dict[str, Tensor]] = None,
                    freeze_local: bool = False, feature_mask: Optional[FeatureMaskConfig] = None) -> EncoderWithHead:
    """Backbone of `model_cfg` (its pretraining decoder/head left out) with the task head.

    `backbone_state`: pretraining weights (a state dict of `build_model(model_cfg)`) loaded
    before the pretraining parts are dropped.
    """
    if is_multimodal(model_cfg):
        raise ValueError("a multimodal model is fine-tuned one modality at a time: select one (modality=NAME)")
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


def input_key(model: nn.Module, batch: dict) -> str:
    """The batch key holding `model`'s input (a multimodal model: that of the batch's modality)."""
    if "modality" in batch:
        return model.modalities[batch["modality"]].input_key
    return model.modality.input_key
