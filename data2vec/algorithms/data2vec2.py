"""data2vec 2.0: the student encodes only visible tokens, a conv decoder fills the masked ones,
and M masked views per sample share one teacher pass (reference section 2)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from data2vec.algorithms.common import (  # noqa: F401  (re-exported for callers of this module)
    PretrainOutput, RepresentationCollapse, check_collapse, encode_unmasked, init_bert_params,
    make_teacher, teacher_targets,
)
from data2vec.algorithms.ema import EMATeacher
from data2vec.algorithms.losses import feature_std, regression_loss
from data2vec.config import ModelConfig, check_choices
from data2vec.decoders.conv import decoder_input
from data2vec.masking.common import make_mask_info
from data2vec.modalities.registry import build_modality
from data2vec.nn.encoder import EncoderOutput, TransformerEncoder


class Data2Vec2Model(nn.Module):
    """Student = modality encoder + shared Transformer + conv decoder.

    The teacher is a separate `EMATeacher` made by `make_teacher` and passed to
    `pretrain_forward`; it is updated by the training loop after each optimizer step.
    """

    def __init__(self, cfg: ModelConfig, parts: Optional[tuple[nn.Module, nn.Module, nn.Module]] = None) -> None:
        """`parts`: (modality, encoder, decoder) owned elsewhere, used as they are (one modality
        of a multimodal model, which shares its encoder); default: built from `cfg`."""
        super().__init__()
        check_choices(cfg, "model")
        self.cfg = cfg
        if parts is not None:
            self.modality, self.encoder, self.decoder = parts
            return
        self.modality = build_modality(cfg.input, cfg.encoder)
        self.encoder = TransformerEncoder(cfg.encoder)
        self.decoder = self.modality.build_decoder(cfg.decoder)
        # Convolutions (patch embedding, decoder) keep their own init, as in fairseq.
        self.apply(init_bert_params)

    # ------------------------------------------------------------------ teacher
    def make_teacher(self) -> EMATeacher:
        """EMA copy of the parts named by `teacher.scope`; the rest stays shared."""
        return make_teacher(self.modality, self.encoder, self.cfg)

    def teacher_targets(
        self, teacher: EMATeacher, inputs: Tensor, feats: Tensor, padding_mask: Optional[Tensor]
    ) -> Tensor:
        """Targets from one teacher pass over the unmasked input. Returns (B, T, D) float32."""
        return teacher_targets(self.modality, teacher, self.cfg, inputs, feats, padding_mask)

    # ------------------------------------------------------------------ pretraining
    def pretrain_forward(
        self,
        batch: dict[str, Tensor],
        teacher: EMATeacher,
        generator: torch.Generator,
        step: int = 0,
    ) -> PretrainOutput:
        """One data2vec 2.0 forward pass on a batch of B samples with M masks each.

        Args:
            batch: holds the modality's input under `modality.input_key` and optionally
                "padding_mask" (B, T_raw) bool, True = padding.
            generator: CPU generator for the masks (seed it per step for exact resumes).
            step: optimizer step, for the collapse guard.
        """
        cfg, M, E = self.cfg, self.cfg.clone_batch, self.modality.num_extra_tokens
        inputs = batch[self.modality.input_key]
        feats, pad = self.modality.local_features(inputs, batch.get("padding_mask"))  # (B, T, D)
        B, T, D = feats.shape
        y = self.teacher_targets(teacher, inputs, feats, pad)  # (B, T, D)

        # M masked views share the local features and the teacher pass.
        feats_m = feats.repeat_interleave(M, 0)
        pad_m = pad.repeat_interleave(M, 0) if pad is not None else None
        mask = self.modality.make_mask(pad_m, B * M, T, generator).to(feats.device)  # (B*M, T)
        info = make_mask_info(mask)
        ctx = self.modality.contextualize(feats_m, pad_m, info)
        out = self.encoder(ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias)
        dec_in = decoder_input(
            out.x[:, E:], info, self.modality.noise_std, cfg.decoder.input_dropout, self.training
        )
        pred = self.decoder(dec_in)  # (B*M, T, D)

        y_m = y.repeat_interleave(M, 0)
        pred_masked, y_masked = pred[mask], y_m[mask]  # (N_masked, D)
        n = max(pred_masked.shape[0], 1)
        reg = regression_loss(pred_masked, y_masked, cfg.loss.beta, cfg.loss.scale) / n
        loss = reg
        logs = {"loss_regression": reg.detach()}
        if cfg.loss.cls_weight > 0:
            if E < 1:
                raise ValueError("loss.cls_weight > 0 needs a modality with a CLS token")
            cls_target = y.mean(dim=1).repeat_interleave(M, 0)  # (B*M, D)
            # fairseq multiplies by sample_size before its division by sample_size, so the
            # CLS term is cls_weight times the per-sample CLS loss summed over the batch.
            cls = regression_loss(out.x[:, E - 1], cls_target, cfg.loss.beta, cfg.loss.scale) * cfg.loss.cls_weight
            loss = loss + cls
            logs["loss_cls"] = cls.detach()
        logs["target_std"] = feature_std(y_masked).detach()
        logs["pred_std"] = feature_std(pred_masked).detach()
        logs["masked_views"] = float(B * M)
        logs["loss"] = loss.detach()
        check_collapse(cfg, logs, step)
        return PretrainOutput(loss, logs)

    # ------------------------------------------------------------------ inference
    def extract_features(self, inputs: Tensor, padding_mask: Optional[Tensor] = None) -> EncoderOutput:
        """Encode every token (no masking). Returns outputs with extra tokens kept at the front."""
        return encode_unmasked(self.modality, self.encoder, inputs, padding_mask)
