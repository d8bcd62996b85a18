"""data2vec 1.0: the student encodes every token, masked ones replaced by a learned mask
embedding (or `<mask>` ids for text), and a regression head predicts the teacher's targets at
the masked positions (reference section 1).

Per modality (reference table 1.5) the preset chooses: the target tensor
(`targets.layer`: FFN output or end of block), the per-layer and final norms, the loss
(`loss.beta`, `loss.scale`), the head (`decoder.projection_layers`: Linear or the 2-layer MLP),
the EMA schedule and which parts the teacher averages, shares or copies (`teacher.scope`,
`teacher.copied`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from data2vec.algorithms.common import (
    PretrainOutput, check_collapse, encode_unmasked, init_bert_params, make_teacher,
    teacher_targets,
)
from data2vec.algorithms.ema import EMATeacher
from data2vec.algorithms.losses import feature_std, regression_loss
from data2vec.config import ModelConfig, check_choices
from data2vec.decoders.conv import projection
from data2vec.modalities.registry import build_modality
from data2vec.nn.encoder import EncoderOutput, TransformerEncoder


class Data2Vec1Model(nn.Module):
    """Student = modality encoder + shared Transformer + regression head (`head`).

    `mask_emb` (D,) replaces masked local features (speech `mask_emb`, BEiT `mask_token`); a
    modality that corrupts its ids instead (text: `<mask>`) has none. The modality initialises
    it (`Modality.init_v1`) and hides masked positions (`Modality.v1_student_input`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_choices(cfg, "model")
        if cfg.clone_batch != 1:
            raise ValueError(f"model.clone_batch={cfg.clone_batch}: data2vec 1.0 uses one mask per sample")
        if cfg.loss.cls_weight > 0:
            raise ValueError(f"model.loss.cls_weight={cfg.loss.cls_weight}: the CLS loss is data2vec 2.0's; set it to 0")
        self.cfg = cfg
        D = cfg.encoder.dim
        self.modality = build_modality(cfg.input, cfg.encoder)
        self.encoder = TransformerEncoder(cfg.encoder)
        self.head = projection(D, D, cfg.decoder.projection_layers, cfg.decoder.projection_ratio)
        self.apply(init_bert_params)
        self.mask_emb: Optional[nn.Parameter] = self.modality.init_v1(self)

    def make_teacher(self) -> EMATeacher:
        """EMA copy of the parts named by `teacher.scope`; the rest stays shared."""
        return make_teacher(self.modality, self.encoder, self.cfg)

    def student_input(self, inputs: Tensor, feats: Tensor, raw_padding: Optional[Tensor], mask: Tensor,
                      generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Local features with masked positions hidden, and the loss positions (B, T) bool."""
        return self.modality.v1_student_input(inputs, feats, raw_padding, mask, self.mask_emb, generator)

    def pretrain_forward(
        self,
        batch: dict[str, Tensor],
        teacher: EMATeacher,
        generator: torch.Generator,
        step: int = 0,
    ) -> PretrainOutput:
        """One data2vec 1.0 forward pass on a batch of B samples, one mask each.

        Args:
            batch: the modality's input under `modality.input_key` and optionally
                "padding_mask" (B, T_raw) bool, True = padding.
            generator: CPU generator for the masks (seed it per step for exact resumes).
            step: optimizer step, for the collapse guard.
        """
        cfg, E = self.cfg, self.modality.num_extra_tokens
        inputs, raw_pad = batch[self.modality.input_key], batch.get("padding_mask")
        feats, pad = self.modality.local_features(inputs, raw_pad)  # (B, T, D)
        B, T, _ = feats.shape
        y = teacher_targets(self.modality, teacher, cfg, inputs, feats, pad)  # (B, T, D)
        mask = self.modality.make_mask(pad, B, T, generator).to(feats.device)  # (B, T)
        x, loss_mask = self.student_input(inputs, feats, raw_pad, mask, generator)
        ctx = self.modality.contextualize(x, pad, None)
        out = self.encoder(ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias)
        pred = self.head(out.x[:, E:][loss_mask])  # (N_masked, D)
        y_masked = y[loss_mask]
        n = max(pred.shape[0], 1)
        loss = regression_loss(pred, y_masked, cfg.loss.beta, cfg.loss.scale) / n
        real = loss_mask.new_tensor(B * T) if pad is None else (~pad).sum()
        logs = {"loss_regression": loss.detach(), "target_std": feature_std(y_masked).detach(),
                "pred_std": feature_std(pred).detach(), "masked_views": float(B), "loss": loss.detach(),
                "mask_ratio": loss_mask.sum() / real.clamp(min=1)}
        check_collapse(cfg, logs, step)
        return PretrainOutput(loss, logs)

    def extract_features(self, inputs: Tensor, padding_mask: Optional[Tensor] = None) -> EncoderOutput:
        """Encode every token (no masking). Returns outputs with extra tokens kept at the front."""
        return encode_unmasked(self.modality, self.encoder, inputs, padding_mask)
