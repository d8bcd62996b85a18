"""Image input side of data2vec 2.0: patch embedding, fixed 2-D sin-cos positions, a CLS
token, prenet blocks, inverse block masking and the 2-D conv decoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from data2vec.config import DecoderConfig, EncoderConfig, InputConfig, register_kind
from data2vec.decoders.conv import ConvDecoder
from data2vec.masking.common import MaskInfo, gather_tokens
from data2vec.masking.image import inverse_block_mask
from data2vec.modalities.base import Context, masked_features, uniform_mask_embedding
from data2vec.modalities.registry import ModalitySpec, TaskSpec, register
from data2vec.nn.encoder import TransformerEncoder
from data2vec.nn.pos_embed import sincos_2d


@register_kind
@dataclass(frozen=True)
class ImageInputConfig(InputConfig):
    kind: str = "image"
    image_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    prenet_depth: int = 2
    mask_prob: float = 0.8
    mask_prob_adjust: float = 0.07
    mask_length: int = 3  # side of the square blocks
    mask_noise_std: float = 0.01


class PatchEmbed(nn.Module):
    """(B, C, S, S) -> (B, (S/p)^2, D) with a stride-p conv (timm/fairseq `local_encoder.proj`).

    Checks the image size: `grid` = S/p patches per side.
    """

    def __init__(self, image_size: int, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size={image_size} is not a multiple of patch_size={patch}")
        self.image_size, self.grid = image_size, image_size // patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        # MAE/fairseq initialise the patch projection like a Linear layer (xavier uniform).
        nn.init.xavier_uniform_(self.proj.weight.view(dim, -1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got {tuple(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)


class ImageEncoder(nn.Module):
    input_key = "image"
    num_extra_tokens = 1
    no_weight_decay: tuple[str, ...] = ()

    def __init__(self, cfg: ImageInputConfig, enc: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.noise_std = cfg.mask_noise_std
        self.local_encoder = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.in_chans, enc.dim)
        self.grid = self.local_encoder.grid
        self.register_buffer("positions", sincos_2d(enc.dim, self.grid, self.grid)[None], persistent=True)
        self.extra_tokens = nn.Parameter(torch.randn(1, 1, enc.dim))
        self.context_encoder = TransformerEncoder(enc, depth=cfg.prenet_depth, input_norm=True)

    def local_features(self, image: Tensor, padding_mask: Optional[Tensor] = None) -> tuple[Tensor, None]:
        """image: (B, C, H, W) -> patches (B, L, D)."""
        return self.local_encoder(image), None

    def make_mask(self, padding_mask: Optional[Tensor], batch: int, length: int, generator: torch.Generator) -> Tensor:
        c = self.cfg
        return inverse_block_mask(batch, self.grid, c.mask_prob, c.mask_prob_adjust, c.mask_length, True, generator)

    def contextualize(self, x: Tensor, padding_mask: Optional[Tensor], info: Optional[MaskInfo]) -> Context:
        """x: (B, L, D) patches -> (B, 1 + L_keep, D): positions, drop masked, CLS, prenet."""
        x = x + self.positions.to(x.dtype)
        if info is not None:
            x = gather_tokens(x, info.ids_keep)
        x = torch.cat([self.extra_tokens.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.context_encoder(x).x
        return Context(x)

    def build_decoder(self, cfg: DecoderConfig) -> ConvDecoder:
        return ConvDecoder(cfg, self.local_encoder.proj.out_channels, dims=2, grid=(self.grid, self.grid))

    def init_v1(self, model: nn.Module) -> nn.Parameter:
        return uniform_mask_embedding(self.local_encoder.proj.out_channels)

    def v1_student_input(self, inputs: Tensor, feats: Tensor, raw_padding: Optional[Tensor], mask: Tensor,
                         mask_emb: Optional[nn.Parameter], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return masked_features(feats, mask, mask_emb)


def synthetic_images(cfg: Any, batch_size: int) -> dict[str, Tensor]:
    """Noise images of the configured size and channels (image and BEiT inputs)."""
    return {"image": torch.randn(batch_size, cfg.in_chans, cfg.image_size, cfg.image_size)}


register(ModalitySpec(
    input_config=ImageInputConfig,
    build=ImageEncoder,
    synthetic_batch=synthetic_images,
    tiny_overrides={2: (
        "model.encoder.dim=32", "model.encoder.depth=2", "model.encoder.num_heads=2", "model.decoder.dim=32",
        "model.decoder.groups=4", "model.decoder.layers=2", "model.targets.top_k=2", "model.clone_batch=2")},
    pretrain_data={"image": "data2vec.data.image:build_image_data"},
    tasks={"image-classification": TaskSpec("data2vec.train.finetune_image:ImageTask", ("image", "beit"),
                                            "image_fmnist_small", "image_classification")},
    inputs="data2vec.eval.inputs:image_inputs",
))
