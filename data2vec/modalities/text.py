"""Text input side of data2vec: token + learned position embeddings, embedding LayerNorm and
dropout (all in `local_encoder`), token masking and the 1-D conv decoder (reference 1.3, 2.1).

data2vec 2.0 drops a random, equal-count set of tokens (`mask_type="random"`); data2vec 1.0
replaces fairseq `masked_lm` selections by `<mask>` (`mask_type="mlm"`; `<mask>` is the last id,
`vocab_size - 1`, as fairseq's masked_lm task and our tokenizers place it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
from torch import Tensor, nn

from data2vec.config import DecoderConfig, EncoderConfig, InputConfig, register_kind
from data2vec.decoders.conv import ConvDecoder
from data2vec.masking.common import MaskInfo, gather_tokens
from data2vec.masking.text import bert_corrupt, mlm_span_mask, random_token_mask
from data2vec.modalities.base import Context
from data2vec.modalities.registry import ModalitySpec, TaskSpec, register
from data2vec.nn.encoder import TransformerEncoder


@register_kind
@dataclass(frozen=True)
class TextInputConfig(InputConfig):
    kind: str = "text"
    vocab_size: int = 50265  # rows of the token embedding; >= the tokenizer's vocabulary
    pad_id: int = 1  # fairseq/RoBERTa <pad>
    max_positions: int = 512  # longest sequence; the position table has max_positions + pad_id + 1 rows
    embed_dropout: float = 0.1  # after the embedding LayerNorm
    prenet_depth: int = 0  # modality-specific blocks before the shared ones
    mask_prob: float = 0.48
    mask_noise_std: float = 0.01
    mask_type: Literal["random", "mlm"] = "random"  # "random": 2.0 equal-count drop; "mlm": 1.0 masked_lm selection
    mask_span: int = 1  # mlm: tokens per selected span (the released 1.0 config uses 4)
    random_token_prob: float = 0.0  # mlm: share of selected tokens replaced by a random id (BERT 0.1)
    leave_unmasked_prob: float = 0.0  # mlm: share of selected tokens left unchanged (BERT 0.1)


def make_positions(not_padding: Tensor, pad_id: int) -> Tensor:
    """fairseq `utils.make_positions`: real tokens get pad_id + 1, pad_id + 2, ...; padding pad_id.

    not_padding: (B, T) bool. Returns (B, T) int64.
    """
    keep = not_padding.long()
    return torch.cumsum(keep, dim=1) * keep + pad_id


class TextEmbedding(nn.Module):
    """(B, T) token ids -> (B, T, D): tokens + learned positions, LayerNorm, dropout.

    Parameter names match fairseq's `TextLocalEncoder` (reference 4.3); embeddings are not
    scaled by sqrt(D) (`no_scale_embedding`).
    """

    def __init__(self, cfg: TextInputConfig, dim: int, eps: float) -> None:
        super().__init__()
        self.pad_id = cfg.pad_id
        self.embed_tokens = nn.Embedding(cfg.vocab_size, dim, padding_idx=cfg.pad_id)
        # Positions start at pad_id + 1, so 512 tokens need 514 rows (fairseq's offset convention).
        self.embed_positions = nn.Embedding(cfg.max_positions + cfg.pad_id + 1, dim, padding_idx=cfg.pad_id)
        self.layernorm_embedding = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(cfg.embed_dropout)

    def forward(self, tokens: Tensor, padding_mask: Tensor) -> Tensor:
        x = self.embed_tokens(tokens) + self.embed_positions(make_positions(~padding_mask, self.pad_id))
        return self.dropout(self.layernorm_embedding(x))


class TextEncoder(nn.Module):
    input_key = "tokens"
    grid = 0  # tokens form a sequence, not a square grid
    num_extra_tokens = 0  # the <s> token is part of the text; no CLS is added
    no_weight_decay: tuple[str, ...] = ()

    def __init__(self, cfg: TextInputConfig, enc: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.noise_std = cfg.mask_noise_std
        self.local_encoder = TextEmbedding(cfg, enc.dim, enc.norm_eps)
        # fairseq builds no prenet norm or dropout at depth 0, so neither do we.
        self.context_encoder = (
            TransformerEncoder(enc, depth=cfg.prenet_depth, input_norm=True) if cfg.prenet_depth > 0 else None
        )

    def local_features(self, tokens: Tensor, padding_mask: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        """tokens: (B, T) ids -> embeddings (B, T, D) and padding (B, T) or None when there is none.

        Without `padding_mask`, padding is where tokens == pad_id (as fairseq does).
        """
        if tokens.ndim != 2:
            raise ValueError(f"expected token ids of shape (B, T), got {tuple(tokens.shape)}")
        if tokens.shape[1] > self.cfg.max_positions:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens exceeds model.input.max_positions="
                             f"{self.cfg.max_positions}")
        pad = tokens.eq(self.cfg.pad_id) if padding_mask is None else padding_mask
        x = self.local_encoder(tokens, pad)
        return x, (pad if bool(pad.any()) else None)

    def make_mask(self, padding_mask: Optional[Tensor], batch: int, length: int, generator: torch.Generator) -> Tensor:
        pad = padding_mask.cpu() if padding_mask is not None else None
        if self.cfg.mask_type == "mlm":
            return mlm_span_mask(batch, length, self.cfg.mask_prob, self.cfg.mask_span, pad, generator)
        return random_token_mask(batch, length, self.cfg.mask_prob, pad, generator)

    def corrupt(self, tokens: Tensor, selected: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """data2vec 1.0 student input: selected tokens become <mask> (or random / unchanged).

        tokens, selected: (B, T). Returns corrupted ids (B, T) and the loss positions (B, T),
        those now holding <mask>.
        """
        c = self.cfg
        out, at_mask = bert_corrupt(tokens.cpu(), selected.cpu(), c.vocab_size - 1, c.random_token_prob,
                                    c.leave_unmasked_prob, generator=generator)
        return out.to(tokens.device), at_mask.to(tokens.device)

    def contextualize(self, x: Tensor, padding_mask: Optional[Tensor], info: Optional[MaskInfo]) -> Context:
        """x: (B, T, D) -> (B, T', D): drop masked tokens (keeping their padding flags), prenet."""
        if info is not None:
            x = gather_tokens(x, info.ids_keep)
            if padding_mask is not None:
                padding_mask = gather_tokens(padding_mask, info.ids_keep)
        if self.context_encoder is not None:
            x = self.context_encoder(x, padding_mask).x
        return Context(x, padding_mask)

    def build_decoder(self, cfg: DecoderConfig) -> ConvDecoder:
        return ConvDecoder(cfg, self.local_encoder.embed_tokens.embedding_dim, dims=1)

    def init_v1(self, model: nn.Module) -> None:
        """None: data2vec 1.0 text masks ids (`<mask>`), not features, so it has no mask embedding."""
        return None

    def v1_student_input(self, inputs: Tensor, feats: Tensor, raw_padding: Optional[Tensor], mask: Tensor,
                         mask_emb: Optional[nn.Parameter], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The corrupted ids' embeddings; the loss is taken where `<mask>` now stands."""
        corrupted, loss_mask = self.corrupt(inputs, mask, generator)
        return self.local_features(corrupted, raw_padding)[0], loss_mask


def synthetic_tokens(cfg: TextInputConfig, batch_size: int) -> dict[str, Any]:
    """Random ids (never specials) of length min(32, max_positions); the last row half padded."""
    T = min(32, cfg.max_positions)
    tokens = torch.randint(4, cfg.vocab_size, (batch_size, T))
    tokens[:, 0] = 0  # <s>
    padding_mask = torch.zeros(batch_size, T, dtype=torch.bool)
    if batch_size > 1:
        padding_mask[-1, T // 2:] = True
        tokens[-1, T // 2:] = cfg.pad_id
    return {"tokens": tokens, "padding_mask": padding_mask}


register(ModalitySpec(
    input_config=TextInputConfig,
    build=TextEncoder,
    synthetic_batch=synthetic_tokens,
    tiny_overrides={
        2: ("model.encoder.dim=32", "model.encoder.depth=2", "model.encoder.num_heads=2", "model.decoder.dim=32",
            "model.decoder.layers=2", "model.decoder.kernel=3", "model.targets.top_k=2", "model.clone_batch=2",
            "model.input.vocab_size=300"),
        1: ("model.encoder.dim=32", "model.encoder.depth=2", "model.encoder.num_heads=2", "model.targets.top_k=2", "model.input.vocab_size=300"),
    },
    pretrain_data={"text": "data2vec.data.text_pretrain:build_text_data"},
    tasks={"sentence": TaskSpec("data2vec.train.finetune_text:TextTask", ("text",), "sentence_small",
                                 "sequence_classification"),
           "token": TaskSpec("data2vec.train.finetune_text:TextTask", ("text",), "token_small", "token_classification")},
    inputs="data2vec.eval.inputs:text_inputs",
))
