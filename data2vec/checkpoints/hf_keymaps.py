"""Key maps between Hugging Face transformers' Data2Vec{Audio,Text,Vision} state dicts and ours.

The names were read off `state_dict()` of tiny transformers models (v5), not guessed. Tensor
changes that a one-key-to-one-key `KeyMap` cannot express are separate, named passes:

- `QKV` (for `keymaps.fuse_qkv` / `split_qkv`): HF keeps separate query/key/value projections, ours is one fused
  `attn.qkv` (3D x D, rows q then k then v, heads contiguous inside each, as HF's reshape).
  HF vision's key projection has no bias: import writes zeros there, export drops it. A key bias
  adds the same score to every key of a query and softmax ignores that, so neither changes any
  output (exact in real arithmetic; float rounding only).
- `drop_keys`: keys we deliberately do not import, each with the reason, never silently.

Every other key goes through `map_state`, so an unknown key, a missing one or a shape mismatch
is an error that names the key.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
from torch import Tensor

from data2vec.checkpoints.keymaps import KeyMap, KeyMapError, QKVLayout, Transform, weight_bias
from data2vec.nn.relpos import relative_position_index

# HF `base_model_prefix` per modality (task models nest the backbone under it).
PREFIX = {"audio": "data2vec_audio.", "text": "data2vec_text.", "vision": "data2vec_vision."}

# HF vision `mask_token` is (1, 1, D); our `mask_emb` is (D,).
MASK_TOKEN = Transform("mask_token", lambda t: t.reshape(-1), lambda t: t.reshape(1, 1, -1))

# HF's separate attention projections around our fused `attn.qkv`, per modality.
QKV = {
    "audio": QKVLayout(re.compile(r"(.*\.attention)\.(q|k|v)_proj\.(weight|bias)"), ("q", "k", "v"),
                       "{base}.{name}_proj.{param}", "{base}.qkv_proj.{param}"),
    "text": QKVLayout(re.compile(r"(.*\.attention\.self)\.(query|key|value)\.(weight|bias)"), ("query", "key", "value"),
                      "{base}.{name}.{param}", "{base}.qkv.{param}"),
    "vision": QKVLayout(re.compile(r"(.*\.attention\.attention)\.(query|key|value)\.(weight|bias)"),
                        ("query", "key", "value"), "{base}.{name}.{param}", "{base}.qkv.{param}", no_key_bias=True),
}


def _wb(src: str, dst: str) -> tuple:
    return weight_bias(src, dst).rules


def _block_rules(layer: str, names: dict[str, str]) -> tuple:
    """Rules for one Transformer layer template: HF sub-module -> our `encoder.blocks.{}` part."""
    rules: tuple = ()
    for theirs, ours in names.items():
        rules += _wb(f"{layer}.{theirs}", f"encoder.blocks.{{}}.{ours}")
    return rules


def audio_keymap(p: str, conv_pos_depth: int, head: Optional[str]) -> KeyMap:
    """`p`: "" for a bare model's file, PREFIX["audio"] for a task model's."""
    le = "modality.local_encoder"
    rules = (
        (f"{p}feature_extractor.conv_layers.{{}}.conv.weight", f"{le}.conv_layers.{{}}.0.weight"),
        *_wb(f"{p}feature_extractor.conv_layers.{{}}.layer_norm", f"{le}.conv_layers.{{}}.2.1"),
        *_wb(f"{p}feature_projection.layer_norm", f"{le}.project_features.1"),
        *_wb(f"{p}feature_projection.projection", f"{le}.project_features.2"),
        # Our positional encoder is a Sequential with a TransposeLast at index 0: HF layer j is our j + 1.
        *(r for j in range(conv_pos_depth)
          for r in _wb(f"{p}encoder.pos_conv_embed.layers.{j}.conv", f"modality.relative_positional_encoder.{j + 1}.0")),
        *_wb(f"{p}encoder.layer_norm", "modality.context_encoder.input_norm"),
        *_block_rules(f"{p}encoder.layers.{{}}", {
            "attention.qkv_proj": "attn.qkv", "attention.out_proj": "attn.proj", "layer_norm": "norm1",
            "feed_forward.intermediate_dense": "mlp.fc1", "feed_forward.output_dense": "mlp.fc2",
            "final_layer_norm": "norm2"}),
    )
    if head is None:
        rules += ((f"{p}masked_spec_embed", "mask_emb"),)
    elif head == "ctc":
        rules += _wb("lm_head", "head.proj")
    return KeyMap(rules)


def text_keymap(p: str, head: Optional[str]) -> KeyMap:
    le = "modality.local_encoder"
    rules = (
        (f"{p}embeddings.word_embeddings.weight", f"{le}.embed_tokens.weight"),
        # token_type_embeddings are folded into the positions by `fold_token_type` first.
        (f"{p}embeddings.position_embeddings.weight", f"{le}.embed_positions.weight"),
        *_wb(f"{p}embeddings.LayerNorm", f"{le}.layernorm_embedding"),
        *_block_rules(f"{p}encoder.layer.{{}}", {
            "attention.self.qkv": "attn.qkv", "attention.output.dense": "attn.proj",
            "attention.output.LayerNorm": "norm1", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
            "output.LayerNorm": "norm2"}),
    )
    if head == "sequence_classification":
        rules += _wb("classifier.dense", "head.dense") + _wb("classifier.out_proj", "head.out_proj")
    return KeyMap(rules)


def vision_keymap(p: str, per_layer_bias: bool, layer_scale: bool, head: Optional[str], mask_token: bool,
                  final_norm: bool = True) -> KeyMap:
    table = "relative_position_bias.relative_position_bias_table"
    rules = (
        (f"{p}embeddings.cls_token", "modality.extra_tokens"),
        *_wb(f"{p}embeddings.patch_embeddings.projection", "modality.local_encoder.proj"),
        *_block_rules(f"{p}encoder.layer.{{}}", {
            "layernorm_before": "norm1", "attention.attention.qkv": "attn.qkv", "attention.output.dense": "attn.proj",
            "layernorm_after": "norm2", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}),
    )
    if per_layer_bias:
        rules += ((f"{p}encoder.layer.{{}}.attention.attention.{table}", "modality.rel_pos_bias.{}.relative_position_bias_table"),)
    else:
        rules += ((f"{p}encoder.{table}", "modality.rel_pos_bias.relative_position_bias_table"),)
    if layer_scale:
        rules += ((f"{p}encoder.layer.{{}}.lambda_1", "encoder.blocks.{}.gamma_1"),
                  (f"{p}encoder.layer.{{}}.lambda_2", "encoder.blocks.{}.gamma_2"))
    if mask_token:
        rules += ((f"{p}embeddings.mask_token", "mask_emb", MASK_TOKEN),)
    if head == "image_classification":  # HF use_mean_pooling=True: pooler.layernorm is BEiT's fc_norm
        rules += _wb(f"{p}pooler.layernorm", "head.fc_norm") + _wb("classifier", "head.head")
    elif final_norm:  # use_mean_pooling=False: the final LayerNorm on every token
        rules += _wb(f"{p}layernorm", "encoder.norm")
    return KeyMap(rules)


# --------------------------------------------------------------------------- named passes
def fold_token_type(state: dict[str, Tensor], prefix: str, where: str) -> dict[str, Tensor]:
    """Add HF text's token-type row 0 to every position row and drop the token-type table.

    HF adds `token_type_embeddings[token_type_ids]` to word + position embeddings before the
    LayerNorm; data2vec text (RoBERTa) has no token types, every id is 0, and `type_vocab_size`
    is 1 in the released config. Adding row 0 to every position row (the padding row included,
    HF adds it at padded positions too) gives the same sum for every token, so the model is
    unchanged. Export writes a zero row back, which keeps round trips bit-exact.
    """
    tt_key, pos_key = f"{prefix}embeddings.token_type_embeddings.weight", f"{prefix}embeddings.position_embeddings.weight"
    if tt_key not in state:
        raise KeyMapError(f"{where}: missing key {tt_key!r}")
    if pos_key not in state:
        raise KeyMapError(f"{where}: missing key {pos_key!r}")
    out = dict(state)
    tt = out.pop(tt_key)
    if tt.ndim != 2 or tt.shape[0] != 1 or tt.shape[1] != out[pos_key].shape[1]:
        raise KeyMapError(f"{where}: key {tt_key!r} has shape {tuple(tt.shape)}; expected (1, hidden_size) "
                          "(type_vocab_size=1)")
    out[pos_key] = out[pos_key] + tt[0].to(out[pos_key].dtype)
    return out


def drop_keys(state: Mapping[str, Tensor], rules: list[tuple[re.Pattern, str]],
              dropped: dict[str, str]) -> dict[str, Tensor]:
    """Remove the keys a (pattern, reason) rule matches; record each in `dropped`."""
    out = {}
    for key, value in state.items():
        reason = next((r for pat, r in rules if pat.fullmatch(key)), None)
        if reason is None:
            out[key] = value
        else:
            dropped[key] = reason
    return out


def check_relative_position_index(state: dict[str, Tensor], grid: int, where: str,
                                  dropped: dict[str, str]) -> dict[str, Tensor]:
    """Older transformers saved BEiT's `relative_position_index` buffers: verify and drop them."""
    want = relative_position_index(grid, grid)
    out = {}
    for key, value in state.items():
        if key.endswith("relative_position_bias.relative_position_index"):
            if tuple(value.shape) != tuple(want.shape) or not torch.equal(value.long(), want):
                raise KeyMapError(f"{where}: key {key!r} is not BEiT's index for a {grid}x{grid} patch grid")
            dropped[key] = "constant buffer; verified equal to the index our model rebuilds from the grid"
        else:
            out[key] = value
    return out
