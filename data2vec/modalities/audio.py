"""Audio input side of data2vec 2.0 (reference sections 1.2, 2.1, 2.8).

Raw 16 kHz waveform -> wav2vec 2.0 conv feature extractor (50 Hz) -> LayerNorm + Linear
(`local_encoder`, shared with the teacher) -> mask -> grouped-conv positional encoder run on
the zero-filled full sequence -> ALiBi bias gathered to the kept frames -> context encoder
(input LayerNorm + prenet blocks) -> shared Transformer. Decoder: the 1-D conv decoder.

data2vec 1.0 speech uses the same parts with `alibi=False` and `mask_type="span"`; its student
keeps every frame, masked ones replaced by the model's learned mask embedding before the
positional convs (reference 1.2).

Submodule names follow fairseq's `modality_encoders.AUDIO.*` layout (`conv_layers.{i}.0`,
`project_features.{1,2}`, `relative_positional_encoder.{1..5}.0`, `alibi_scale`) so a
checkpoint key map is a prefix change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data2vec.config import DecoderConfig, EncoderConfig, InputConfig, register_kind
from data2vec.decoders.conv import ConvDecoder
from data2vec.masking.audio import block_mask_1d, span_mask
from data2vec.masking.common import MaskInfo, gather_tokens
from data2vec.modalities.base import Context, masked_features, uniform_mask_embedding
from data2vec.modalities.registry import ModalitySpec, TaskSpec, register
from data2vec.nn.encoder import TransformerEncoder


@register_kind
@dataclass(frozen=True)
class AudioInputConfig(InputConfig):
    kind: str = "audio"
    # fairseq conv_feature_layers "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2": 50 Hz at 16 kHz
    conv_channels: int = 512
    conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_pos_depth: int = 5  # grouped conv layers of the positional encoder
    conv_pos_width: int = 95  # kernel = max(3, width // depth) = 19
    conv_pos_groups: int = 16
    prenet_depth: int = 0  # modality-specific blocks before the shared encoder
    mask_prob: float = 0.5
    mask_prob_adjust: float = 0.05
    mask_length: int = 5
    mask_noise_std: float = 0.01  # noise at masked slots of the decoder input
    alibi_scale_init: float = 1.0  # learned per-head ALiBi scale, clamped >= 0
    alibi: bool = True  # 2.0 adds ALiBi to attention; 1.0 has only the conv positions
    mask_type: Literal["block", "span"] = "block"  # "block": 2.0 block mask; "span": wav2vec 2.0 spans, equal counts (1.0)
    @property
    def conv_layers(self) -> tuple[tuple[int, int, int], ...]:
        """(channels, kernel, stride) per feature-extractor layer."""
        if len(self.conv_kernels) != len(self.conv_strides) or not self.conv_kernels:
            raise ValueError(
                f"model.input.conv_kernels {self.conv_kernels} and conv_strides {self.conv_strides} "
                "must be non-empty and of equal length"
            )
        return tuple((self.conv_channels, k, s) for k, s in zip(self.conv_kernels, self.conv_strides))


class TransposeLast(nn.Module):
    """(..., A, B) -> (..., B, A); keeps fairseq's Sequential indices (and so its key names)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(-2, -1)


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (fairseq's feature extractor norm, stable under bf16)."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


def conv_output_lengths(lengths: Tensor, layers: tuple[tuple[int, int, int], ...]) -> Tensor:
    """Frames after unpadded convs: L <- floor((L - k) / s) + 1 per layer, floored at 0."""
    out = lengths.long()
    for _, k, s in layers:
        out = torch.div(out - k, s, rounding_mode="floor") + 1
        out = out.clamp_min(0)
    return out


def feature_padding_mask(padding_mask: Tensor, num_frames: int, layers: tuple[tuple[int, int, int], ...]) -> Tensor:
    """(B, T_samples) sample padding mask -> (B, num_frames) frame padding mask, True = padding.

    A frame is real iff its whole receptive field lies in real samples.
    """
    lengths = conv_output_lengths((~padding_mask).sum(1), layers)
    return torch.arange(num_frames, device=padding_mask.device)[None, :] >= lengths[:, None]


def conv1d_time_major(h: Tensor, weight: Tensor, stride: int) -> Tensor:
    """An unpadded, bias-free Conv1d on time-major input, as matrix products on strided views.

    Equal to `F.conv1d(h.transpose(1, 2), weight, stride=stride).transpose(1, 2)` up to float
    rounding, but it keeps (B, T, C) throughout, so the channel LayerNorm and GELU after it run
    on contiguous memory and no transposed copies are made (forward or backward). When
    k >= stride the first `stride` taps read consecutive frames, one (B, T', stride * C) view;
    each further tap is a (B, T', C) view with a frame stride of `stride`.

    Args:
        h: (B, T, C) features (a (B, T, 1) waveform for the first layer).
        weight: (C_out, C, k) Conv1d weight.
    Returns:
        (B, T', C_out) with T' = (T - k) // stride + 1.
    """
    B, T, C = h.shape
    k = weight.shape[2]
    frames = (T - k) // stride + 1
    if frames < 1:
        raise ValueError(f"{T} input frames are fewer than the kernel size {k}")
    if C == 1:  # the waveform layer: a small (B, T', k) copy beats k rank-1 products
        return h[..., 0].unfold(1, k, stride) @ weight[:, 0].t()
    taps = weight.permute(2, 1, 0)  # (k, C, C_out)
    out, first = None, 0
    if k >= stride:  # then stride * frames <= T: the first `stride` taps are one view
        first = stride
        out = _bmm(h[:, : stride * frames].reshape(B, frames, stride * C), taps[:stride].reshape(stride * C, -1))
    for j in range(first, k):
        tap = _bmm(h[:, j : j + stride * (frames - 1) + 1 : stride], taps[j])
        out = tap if out is None else out + tap
    return out


def _bmm(x: Tensor, w: Tensor) -> Tensor:
    """(B, T, K) @ (K, N) without copying a strided x (a batched GEMM reads it in place)."""
    return torch.bmm(x, w.expand(x.shape[0], -1, -1))


class FeatureEncoder(nn.Module):
    """Waveform (B, T) -> projected features (B, T', D): conv stack, LayerNorm, Linear.

    Conv layers have no bias and are followed by an affine fp32 LayerNorm over channels and
    GELU (wav2vec 2.0 `extractor_mode: layer_norm`). The modules keep fairseq's layout (and so
    its key names); the forward pass computes them time-major (`conv1d_time_major`).
    """

    def __init__(self, layers: tuple[tuple[int, int, int], ...], dim: int) -> None:
        super().__init__()
        self.layers = layers
        blocks, in_ch = [], 1
        for ch, k, s in layers:
            conv = nn.Conv1d(in_ch, ch, k, stride=s, bias=False)
            nn.init.kaiming_normal_(conv.weight)
            norm = nn.Sequential(TransposeLast(), Fp32LayerNorm(ch), TransposeLast())
            blocks.append(nn.Sequential(conv, nn.Dropout(0.0), norm, nn.GELU()))
            in_ch = ch
        self.conv_layers = nn.ModuleList(blocks)
        self.project_features = nn.Sequential(TransposeLast(), nn.LayerNorm(in_ch), nn.Linear(in_ch, dim))

    def forward(self, wav: Tensor) -> Tensor:
        h = wav.unsqueeze(2)  # (B, T, 1)
        for conv, dropout, norm, act in self.conv_layers:
            # norm = (TransposeLast, Fp32LayerNorm, TransposeLast): time-major, only the norm applies.
            h = act(norm[1](dropout(conv1d_time_major(h, conv.weight, conv.stride[0]))))
        return self.project_features[2](self.project_features[1](h))  # (B, T', D)


def conv_positional_encoder(dim: int, depth: int, width: int, groups: int) -> nn.Sequential:
    """(B, T, D) -> (B, T, D): `depth` grouped convs, each with LN (no affine) and GELU."""
    k = max(3, width // depth)

    def layer() -> nn.Sequential:
        conv = nn.Conv1d(dim, dim, k, padding=k // 2, groups=groups)
        trim = _TrimEven() if k % 2 == 0 else nn.Identity()  # fairseq SamePad
        ln = nn.LayerNorm(dim, elementwise_affine=False)
        return nn.Sequential(conv, trim, TransposeLast(), ln, TransposeLast(), nn.GELU())

    return nn.Sequential(TransposeLast(), *[layer() for _ in range(depth)], TransposeLast())


class _TrimEven(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x[..., :-1]


def alibi_slopes(num_heads: int) -> Tensor:
    """Standard ALiBi head slopes (Press et al.), including the non-power-of-two rule. (H,)"""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return torch.tensor(power_of_2(num_heads))
    closest = 2 ** math.floor(math.log2(num_heads))
    extra = power_of_2(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(power_of_2(closest) + extra)


def alibi_bias(positions: Tensor, slopes: Tensor, scale: Tensor) -> Tensor:
    """ALiBi bias between tokens at the given original positions.

    Using the original frame indices of the kept tokens is the same as gathering rows and
    columns of the full-length bias (fairseq `masked_alibi`), so distances stay true after
    masked frames are dropped.

    Args:
        positions: (B, T') original frame index of each token.
        slopes: (H,) per-head slopes.
        scale: (H,) learned non-negative scales.
    Returns:
        (B, H, T', T') float: -slope_h * scale_h * |p_i - p_j|.
    """
    dist = (positions[:, :, None] - positions[:, None, :]).abs().to(slopes.dtype)  # (B, T', T')
    return -(slopes * scale)[None, :, None, None] * dist[:, None]


class AudioEncoder(nn.Module):
    input_key = "audio"
    grid = 0  # tokens form a sequence, not a square grid
    num_extra_tokens = 0
    no_weight_decay = ("alibi_scale",)  # fairseq's composite optimizer: the learned ALiBi scales never decay

    def __init__(self, cfg: AudioInputConfig, enc: EncoderConfig) -> None:
        super().__init__()
        if enc.dim % cfg.conv_pos_groups:
            raise ValueError(f"encoder.dim={enc.dim} is not divisible by model.input.conv_pos_groups={cfg.conv_pos_groups}")
        self.cfg = cfg
        self.noise_std = cfg.mask_noise_std
        self.local_encoder = FeatureEncoder(cfg.conv_layers, enc.dim)
        self.relative_positional_encoder = conv_positional_encoder(
            enc.dim, cfg.conv_pos_depth, cfg.conv_pos_width, cfg.conv_pos_groups
        )
        if cfg.alibi:
            self.register_buffer("slopes", alibi_slopes(enc.num_heads), persistent=False)
            self.alibi_scale = nn.Parameter(torch.full((enc.num_heads,), cfg.alibi_scale_init))
        self.context_encoder = TransformerEncoder(enc, depth=cfg.prenet_depth, input_norm=True)

    def local_features(self, audio: Tensor, padding_mask: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        """audio: (B, T_samples) normalized waveform; padding_mask (B, T_samples), True = padding.

        Returns features (B, T, D) at 50 Hz and their padding mask (B, T) (None without one).
        """
        if audio.ndim != 2:
            raise ValueError(f"expected audio of shape (batch, samples), got {tuple(audio.shape)}")
        x = self.local_encoder(audio)
        if padding_mask is None:
            return x, None
        return x, feature_padding_mask(padding_mask, x.shape[1], self.cfg.conv_layers)

    def make_mask(self, padding_mask: Optional[Tensor], batch: int, length: int, generator: torch.Generator) -> Tensor:
        c = self.cfg
        if c.mask_type == "span":
            return span_mask(batch, length, c.mask_prob, c.mask_length, padding_mask, generator, same_count=True)
        return block_mask_1d(batch, length, c.mask_prob, c.mask_length, c.mask_prob_adjust, padding_mask, generator)

    def contextualize(self, x: Tensor, padding_mask: Optional[Tensor], info: Optional[MaskInfo]) -> Context:
        """x: (B, T, D) features -> (B, T_keep, D) after positions, dropping, prenet.

        The positional convs see the full-length sequence with masked (and padded) frames
        zeroed, as fairseq's `encoder_zero_mask`; their output is taken at the kept frames.
        """
        B, T, _ = x.shape
        hidden = torch.zeros(B, T, dtype=torch.bool, device=x.device)
        if info is not None:
            hidden |= info.mask
        if padding_mask is not None:
            hidden |= padding_mask
        pos = self.relative_positional_encoder(x.masked_fill(hidden[..., None], 0.0))
        x = x + pos
        positions = torch.arange(T, device=x.device).expand(B, T)
        if info is not None:
            x = gather_tokens(x, info.ids_keep)
            positions = info.ids_keep
            padding_mask = gather_tokens(padding_mask, info.ids_keep) if padding_mask is not None else None
        bias = None
        if self.cfg.alibi:
            # float32 even under bf16 autocast (see combine_masks).
            bias = alibi_bias(positions, self.slopes, self.alibi_scale.clamp_min(0)).float()
        x = self.context_encoder(x, padding_mask, bias).x
        return Context(x, padding_mask, bias)

    def build_decoder(self, cfg: DecoderConfig) -> ConvDecoder:
        return ConvDecoder(cfg, self.local_encoder.project_features[2].out_features, dims=1)

    def init_v1(self, model: nn.Module) -> nn.Parameter:
        return uniform_mask_embedding(self.local_encoder.project_features[2].out_features)

    def v1_student_input(self, inputs: Tensor, feats: Tensor, raw_padding: Optional[Tensor], mask: Tensor,
                         mask_emb: Optional[nn.Parameter], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return masked_features(feats, mask, mask_emb)


def synthetic_audio(cfg: AudioInputConfig, batch_size: int) -> dict[str, Any]:
    """Noise waveforms of 0.5 s and 0.4 s (padded), enough frames for any mask."""
    n = 8000
    audio = torch.randn(batch_size, n)
    pad = torch.zeros(batch_size, n, dtype=torch.bool)
    pad[1::2, int(n * 0.8):] = True
    return {"audio": audio.masked_fill(pad, 0.0), "padding_mask": pad}


_TINY_ENCODER = ("model.encoder.dim=32", "model.encoder.depth=2", "model.encoder.num_heads=2", "model.targets.top_k=2")
register(ModalitySpec(
    input_config=AudioInputConfig,
    build=AudioEncoder,
    synthetic_batch=synthetic_audio,
    tiny_overrides={
        2: ("model.input.conv_channels=32", "model.encoder.dim=32", "model.encoder.depth=2",
            "model.encoder.num_heads=2", "model.input.conv_pos_groups=4", "model.input.prenet_depth=0",
            "model.decoder.dim=32", "model.decoder.groups=4", "model.decoder.layers=2", "model.targets.top_k=2",
            "model.clone_batch=2"),
        1: _TINY_ENCODER + ("model.input.conv_channels=32", "model.input.conv_pos_groups=4"),
    },
    pretrain_data={"audio": "data2vec.data.audio_pretrain:build_audio_data"},
    tasks={"ctc": TaskSpec("data2vec.train.finetune_audio:SpeechTask", ("audio",), "ctc_small", "ctc"),
           "audio-classification": TaskSpec("data2vec.train.finetune_audio:SpeechTask", ("audio",),
                                            "audio_cls_small", "audio_classification")},
    inputs="data2vec.eval.inputs:audio_inputs",
))
