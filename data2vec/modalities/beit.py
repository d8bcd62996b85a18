"""Image input side of data2vec 1.0 (BEiT backbone, reference 1.4): patch embedding, a CLS
token, no absolute positions, one relative position bias shared by every block, and BEiT's
block-wise masking. The student's masked patches hold the model's learned mask token.

Used with a pre-LN encoder with layer scale (`encoder.norm_first=True`,
`encoder.layer_scale_init=0.1` / 1e-4 / 1e-5), as BEiT. BEiT's attention has q and v biases but
no k bias; our fused qkv keeps a k bias, which cannot change the output (it adds the same
score to every key of a query, and softmax ignores that), so imported weights set it to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from data2vec.config import DecoderConfig, EncoderConfig, InputConfig, register_kind
from data2vec.masking.common import MaskInfo
from data2vec.masking.image import beit_block_mask
from data2vec.modalities.base import Context, masked_features
from data2vec.modalities.image import PatchEmbed, synthetic_images
from data2vec.modalities.registry import ModalitySpec, register
from data2vec.nn.relpos import RelativePositionBias


def beit_trunc_normal_(t: Tensor, std: float = 0.02) -> Tensor:
    """BEiT's `trunc_normal_`: N(0, std) truncated at +-1 std (effective std about 0.54 * std)."""
    return nn.init.trunc_normal_(t, std=std, a=-std, b=std)


@torch.no_grad()
def init_beit_params(module: nn.Module) -> None:
    """BEiT's `_init_weights`: Linear and Conv2d (the patch embedding) weights truncated normal,
    zero biases (LayerNorms keep ones and zeros). Use with `nn.Module.apply`."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        beit_trunc_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@register_kind
@dataclass(frozen=True)
class BeitInputConfig(InputConfig):
    kind: str = "beit"
    image_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_mask_patches: int = 120  # of 196 for 224 px / 16 px patches (about 61%)
    min_mask_patches: int = 16  # smallest block
    max_mask_patches: Optional[int] = None  # largest block; None: the whole grid
    min_aspect: float = 0.3  # blocks' aspect ratio in [min_aspect, 1 / min_aspect]
    # "shared": one table for all blocks (pretraining); "per_layer": one per block, as BEiT's
    # fine-tuning copies the shared table into every block (released fine-tuned files).
    rel_pos_bias: Literal["shared", "per_layer"] = "shared"


class BeitImageEncoder(nn.Module):
    input_key = "image"
    num_extra_tokens = 1
    noise_std = 0.0  # no 2.0 decoder
    no_weight_decay: tuple[str, ...] = ()

    def __init__(self, cfg: BeitInputConfig, enc: EncoderConfig) -> None:
        super().__init__()
        if not enc.norm_first:
            raise ValueError("model.input.kind='beit' needs the pre-LN encoder (model.encoder.norm_first=true)")
        self.cfg = cfg
        self.local_encoder = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.in_chans, enc.dim)
        self.grid = self.local_encoder.grid
        if not 0 < cfg.num_mask_patches < self.grid**2:
            raise ValueError(f"model.input.num_mask_patches={cfg.num_mask_patches} must be in (0, {self.grid ** 2})")
        self.extra_tokens = nn.Parameter(torch.zeros(1, 1, enc.dim))
        beit_trunc_normal_(self.extra_tokens)
        grid = (self.grid, self.grid)
        if cfg.rel_pos_bias == "shared":
            self.rel_pos_bias = RelativePositionBias(grid, enc.num_heads)
        else:
            self.rel_pos_bias = nn.ModuleList(RelativePositionBias(grid, enc.num_heads) for _ in range(enc.depth))

    def local_features(self, image: Tensor, padding_mask: Optional[Tensor] = None) -> tuple[Tensor, None]:
        """image: (B, C, H, W) -> patches (B, L, D)."""
        return self.local_encoder(image), None

    def make_mask(self, padding_mask: Optional[Tensor], batch: int, length: int, generator: torch.Generator) -> Tensor:
        c = self.cfg
        return beit_block_mask(batch, self.grid, self.grid, c.num_mask_patches, c.min_mask_patches,
                               c.max_mask_patches, c.min_aspect, None, generator)

    def contextualize(self, x: Tensor, padding_mask: Optional[Tensor], info: Optional[MaskInfo]) -> Context:
        """x: (B, L, D) patches -> (B, 1 + L, D) with CLS first, plus the shared relative bias."""
        if info is not None:
            raise ValueError("the BEiT image encoder keeps every patch (data2vec 1.0); use model.version=1")
        x = torch.cat([self.extra_tokens.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        if self.cfg.rel_pos_bias == "per_layer":
            return Context(x, block_bias=[b() for b in self.rel_pos_bias])
        return Context(x, attn_bias=self.rel_pos_bias())

    def build_decoder(self, cfg: DecoderConfig) -> nn.Module:
        raise ValueError("model.input.kind='beit' is the data2vec 1.0 backbone; it has no 2.0 decoder "
                         "(use model.version=1, or model.input.kind='image' for 2.0)")

    def init_v1(self, model: nn.Module) -> nn.Parameter:
        """BEiT's init: truncated normal everywhere (the mask token too), depth-rescaled outputs."""
        mask_emb = nn.Parameter(torch.empty(self.extra_tokens.shape[-1]))
        model.apply(init_beit_params)
        beit_trunc_normal_(mask_emb)
        beit_rescale(model.encoder)
        return mask_emb

    def v1_student_input(self, inputs: Tensor, feats: Tensor, raw_padding: Optional[Tensor], mask: Tensor,
                         mask_emb: Optional[nn.Parameter], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return masked_features(feats, mask, mask_emb)


@torch.no_grad()
def beit_rescale(encoder: nn.Module) -> None:
    """BEiT's `fix_init_weight`: block i's output projections scaled by 1/sqrt(2 (i + 1))."""
    for i, blk in enumerate(encoder.blocks):
        blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
        blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))


register(ModalitySpec(
    input_config=BeitInputConfig,
    build=BeitImageEncoder,
    synthetic_batch=synthetic_images,
    tiny_overrides={1: ("model.encoder.dim=32", "model.encoder.depth=2", "model.encoder.num_heads=2",
                        "model.targets.top_k=2")},
    inputs="data2vec.eval.inputs:image_inputs",
))

