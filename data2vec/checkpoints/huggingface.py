"""Hugging Face transformers import and export for data2vec 1.0 models.

`import_hf(folder)` reads a `save_pretrained` folder (`config.json` plus `model.safetensors`,
sharded safetensors, or `pytorch_model.bin` loaded with `weights_only=True`) of

    Data2VecAudioModel, Data2VecAudioForCTC,
    Data2VecTextModel, Data2VecTextForMaskedLM (backbone only), Data2VecTextForSequenceClassification,
    Data2VecVisionModel, Data2VecVisionForImageClassification

and returns our `ModelConfig` (the matching data2vec 1.0 preset with the sizes, eps and dropouts of
the HF config), a `HeadConfig` for task models (None for bare ones) and a state dict that loads
strictly into `Data2Vec1Model(cfg)` (bare) or `build_finetuned(cfg, head)` (task models).

`export_hf(model, model_cfg, head_cfg, folder)` writes the inverse: a folder that
`transformers.<Class>.from_pretrained` loads with no missing or unexpected keys.

Module differences we map (checked by tests/checkpoints/test_huggingface.py, float32 max abs
diff well below 1e-4): HF separate q/k/v vs our fused qkv, BEiT's missing key bias, HF text's
token-type table (folded into positions), per-layer vs shared BEiT relative bias, BEiT mean pooling
(`pooler.layernorm` = our `fc_norm`, no final LayerNorm). Dropout placement matches in every
layer; HF text uses one `hidden_dropout_prob` for the embeddings and the layers where we have
`embed_dropout` and `encoder.dropout` (training only). HF audio's `feat_proj_dropout`,
`final_dropout`, SpecAugment (`mask_time_*`) and vision's embedding dropout have no counterpart
and are ignored on import. Both use exact (erf) GELU and pad-aware attention; HF audio also zeroes
padded frames before the positional convs, as we do, so real frames agree under padding (padded
frames themselves differ and are meaningless in both). HF text attends to padding unless given an
`attention_mask`; ours masks `pad_id` tokens by default.
"""

from __future__ import annotations

import dataclasses as dc
import json
import logging
import re
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from data2vec.checkpoints import hf_keymaps as hk
from data2vec.checkpoints.keymaps import KeyMap, fuse_qkv, map_state, split_qkv
from data2vec.checkpoints.pretrained import read_safetensors
from data2vec.config import ConfigError, ModelConfig
from data2vec.heads.finetuned import HeadConfig
from data2vec.models import build_finetuned

log = logging.getLogger(__name__)

# architecture -> (modality, our head kind or None, True if the backbone sits under the prefix)
ARCHITECTURES = {
    "Data2VecAudioModel": ("audio", None, False),
    "Data2VecAudioForCTC": ("audio", "ctc", True),
    "Data2VecTextModel": ("text", None, False),
    "Data2VecTextForMaskedLM": ("text", None, True),
    "Data2VecTextForSequenceClassification": ("text", "sequence_classification", True),
    "Data2VecVisionModel": ("vision", None, False),
    "Data2VecVisionForImageClassification": ("vision", "image_classification", True),
}
BARE = {"data2vec-audio": "Data2VecAudioModel", "data2vec-text": "Data2VecTextModel",
        "data2vec-vision": "Data2VecVisionModel"}
PRESET = {"audio": "data2vec_audio_base", "text": "data2vec_text_base", "vision": "data2vec_image_base"}
OUR_KIND = {"audio": "audio", "text": "text", "beit": "vision"}
EXPORT_ARCH = {("audio", None): "Data2VecAudioModel", ("audio", "ctc"): "Data2VecAudioForCTC",
               ("text", None): "Data2VecTextModel",
               ("text", "sequence_classification"): "Data2VecTextForSequenceClassification",
               ("vision", None): "Data2VecVisionModel",
               ("vision", "image_classification"): "Data2VecVisionForImageClassification"}

_INDEX_BUFFER = "constant index buffer (saved by older transformers); the model recomputes it"
# Keys we read but do not import, with the reason; matched as full regexes against file keys.
DROPPED = {
    "Data2VecAudioForCTC": [(r"data2vec_audio\.masked_spec_embed",
                             "HF fine-tuning's SpecAugment mask embedding; our CTC model has no mask embedding and "
                             "inference never uses it")],
    "Data2VecTextModel": [(r"pooler\.dense\.(weight|bias)",
                           "HF pooler (dense + tanh on <s>): not part of data2vec, never trained by it; our "
                           "classification head has its own dense layer")],
    "Data2VecTextForMaskedLM": [(r"lm_head\..*", "masked-LM head (copied from fairseq's released file); we have no "
                                 "MLM head kind, the backbone is imported as a bare model")],
    "Data2VecVisionForImageClassification": [(r"data2vec_vision\.embeddings\.mask_token",
                                              "mask token of masked-image pretraining; unused by the classifier")],
}
for _arch in ("Data2VecTextModel", "Data2VecTextForMaskedLM", "Data2VecTextForSequenceClassification"):
    DROPPED.setdefault(_arch, []).append((r"(data2vec_text\.)?embeddings\.(position_ids|token_type_ids)", _INDEX_BUFFER))


def _err(where: str, field: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{where}: {field}={value!r} is not supported: {why}")


# --------------------------------------------------------------------------- reading
def read_hf_state(folder: Path) -> dict[str, Tensor]:
    """Weights of a HF folder: model.safetensors, its sharded index, or pytorch_model.bin
    (`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers)."""
    if (folder / "model.safetensors").is_file():
        return read_safetensors(folder / "model.safetensors")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(read_safetensors(folder / shard))
        return state
    if (folder / "pytorch_model.bin").is_file():
        try:
            return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, foreign pickle refused by weights_only, ...
            raise ValueError(f"{folder / 'pytorch_model.bin'}: not a readable weights file: {e}") from e
    raise FileNotFoundError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def detect_architecture(hf: dict[str, Any], where: str) -> str:
    archs = hf.get("architectures") or []
    if archs:
        if len(archs) != 1 or archs[0] not in ARCHITECTURES:
            raise _err(where, "architectures", archs, f"expected one of {sorted(ARCHITECTURES)}")
        return archs[0]
    if hf.get("model_type") not in BARE:
        raise _err(where, "model_type", hf.get("model_type"), f"expected one of {sorted(BARE)}")
    return BARE[hf["model_type"]]


def _require(hf: dict, where: str, field: str, ok: Any, default: Any, why: str) -> Any:
    value = hf.get(field, default)
    if not (ok(value) if callable(ok) else value == ok):
        raise _err(where, field, value, why)
    return value


def _encoder(hf: dict, where: str, base, **kw) -> Any:
    dim, heads, inter = hf["hidden_size"], hf["num_attention_heads"], hf["intermediate_size"]
    if dim % heads:
        raise _err(where, "num_attention_heads", heads, f"hidden_size={dim} is not divisible by it")
    ratio = inter / dim
    if int(dim * ratio) != inter:
        raise _err(where, "intermediate_size", inter, f"not representable as hidden_size x mlp_ratio ({dim})")
    _require(hf, where, "hidden_act", "gelu", "gelu", "our blocks use exact GELU")
    return dc.replace(base, dim=dim, depth=hf["num_hidden_layers"], num_heads=heads, mlp_ratio=ratio,
                      norm_eps=float(hf["layer_norm_eps"]), **kw)


def model_config_from_hf(hf: dict[str, Any], modality: str, where: str, head: Optional[str]) -> ModelConfig:
    """Our ModelConfig: the released 1.0 preset of the modality with the HF config's sizes."""
    from data2vec.presets import get_preset

    base = get_preset(PRESET[modality]).model
    if modality == "audio":
        _require(hf, where, "conv_bias", False, False, "our feature-extractor convs have no bias")
        _require(hf, where, "feat_extract_norm", "layer", "layer", "only the per-layer LayerNorm extractor exists")
        _require(hf, where, "do_stable_layer_norm", False, False, "our speech encoder is post-LN")
        _require(hf, where, "feat_extract_activation", "gelu", "gelu", "our feature extractor uses exact GELU")
        _require(hf, where, "add_adapter", False, False, "no adapter layers")
        _require(hf, where, "layer_norm_eps", lambda v: float(v) == 1e-5, 1e-5,
                 "our feature-projection LayerNorm uses eps 1e-5 (the released models do)")
        conv_dim = _require(hf, where, "conv_dim", lambda v: len(set(v)) == 1, None, "conv channels must all be equal")
        depth = hf["num_conv_pos_embeddings"]
        k = _require(hf, where, "conv_pos_kernel_size", lambda v: v >= 3, 19, "kernels below 3 are not supported")
        inp = dc.replace(base.input, conv_channels=conv_dim[0], conv_kernels=tuple(hf["conv_kernel"]),
                         conv_strides=tuple(hf["conv_stride"]), conv_pos_depth=depth, conv_pos_width=k * depth,
                         conv_pos_groups=hf["num_conv_pos_embedding_groups"])
        enc = _encoder(hf, where, base.encoder, dropout=hf.get("hidden_dropout", 0.1),
                       attn_dropout=hf.get("attention_dropout", 0.1), activation_dropout=hf.get("activation_dropout", 0.1),
                       layer_drop=hf.get("layerdrop", 0.1))
    elif modality == "text":
        _require(hf, where, "type_vocab_size", 1, 2, "data2vec text has no token types (released config: 1)")
        _require(hf, where, "position_embedding_type", "absolute", "absolute", "only learned absolute positions")
        _require(hf, where, "is_decoder", False, False, "data2vec text is an encoder")
        _require(hf, where, "add_cross_attention", False, False, "data2vec text is an encoder")
        pad = hf.get("pad_token_id", 1)
        mpe = _require(hf, where, "max_position_embeddings", lambda v: v > pad + 1, 512,
                       f"positions start at pad_token_id + 1 = {pad + 1}")
        inp = dc.replace(base.input, vocab_size=hf["vocab_size"], pad_id=pad, max_positions=mpe - pad - 1,
                         embed_dropout=hf.get("hidden_dropout_prob", 0.1))
        enc = _encoder(hf, where, base.encoder, dropout=hf.get("hidden_dropout_prob", 0.1),
                       attn_dropout=hf.get("attention_probs_dropout_prob", 0.1), activation_dropout=0.0)
    else:
        _require(hf, where, "use_absolute_position_embeddings", False, False,
                 "data2vec vision uses relative position bias only")
        per_layer = bool(hf.get("use_relative_position_bias", False))
        _require(hf, where, "use_shared_relative_position_bias", lambda v: bool(v) != per_layer, False,
                 "exactly one of use_relative_position_bias / use_shared_relative_position_bias must be set")
        mean_pooling = bool(hf.get("use_mean_pooling", True))
        if head == "image_classification":
            _require(hf, where, "use_mean_pooling", True, True, "the classifier needs mean pooling (BEiT fc_norm)")
        size = _require(hf, where, "image_size", lambda v: isinstance(v, int) or len(set(v)) == 1, 224,
                        "only square images")
        size = size if isinstance(size, int) else size[0]
        grid2 = (size // hf.get("patch_size", 16)) ** 2
        n_mask = max(1, min(grid2 - 1, round(grid2 * base.input.num_mask_patches / 196)))
        inp = dc.replace(base.input, image_size=size, patch_size=hf.get("patch_size", 16),
                         in_chans=hf.get("num_channels", 3), num_mask_patches=n_mask,
                         min_mask_patches=min(base.input.min_mask_patches, max(1, n_mask // 4)),
                         rel_pos_bias="per_layer" if per_layer else "shared")
        enc = _encoder(hf, where, base.encoder, dropout=hf.get("hidden_dropout_prob", 0.0),
                       attn_dropout=hf.get("attention_probs_dropout_prob", 0.0),
                       layer_scale_init=float(hf.get("layer_scale_init_value", 0.1)),
                       drop_path=hf.get("drop_path_rate", 0.1),
                       # A bare mean-pooling model ends without a LayerNorm (nn.Identity in transformers).
                       final_norm=head is not None or not mean_pooling)
    targets = dc.replace(base.targets, top_k=min(base.targets.top_k, enc.depth))
    return dc.replace(base, input=inp, encoder=enc, targets=targets)


def _num_labels(hf: dict) -> int:
    if "num_labels" in hf:
        return int(hf["num_labels"])
    return len(hf["id2label"]) if hf.get("id2label") else 2


def _keymap(modality: str, prefix: str, cfg: ModelConfig, head: Optional[str], mask_token: bool) -> KeyMap:
    if modality == "audio":
        return hk.audio_keymap(prefix, cfg.input.conv_pos_depth, head)
    if modality == "text":
        return hk.text_keymap(prefix, head)
    return hk.vision_keymap(prefix, cfg.input.rel_pos_bias == "per_layer", cfg.encoder.layer_scale_init > 0, head,
                            mask_token, cfg.encoder.final_norm)


def import_hf(folder: str | Path, *, dropped: Optional[dict[str, str]] = None,
              ) -> tuple[ModelConfig, Optional[HeadConfig], dict[str, Tensor]]:
    """Read a transformers Data2Vec* folder. Returns (model config, head config or None, state).

    Bare models (`*Model`, and `Data2VecTextForMaskedLM` whose MLM head is dropped) give a state
    for `Data2Vec1Model(cfg)`: HF files have no data2vec regression head, so `head.*` holds our
    own initialisation (seeded, deterministic), as does `mask_emb` when the file has no mask
    embedding (HF audio with mask_time_prob=0 and mask_feature_prob=0, vision with
    use_mask_token=False). Task models give the full state of `build_finetuned(cfg, head)`.

    Keys deliberately not imported (see `DROPPED`) are logged with their reason and, when
    `dropped` is given, recorded there (key -> reason). Any other unknown key, a missing key or a
    shape mismatch raises `KeyMapError`; an unsupported config value raises `ConfigError`.
    """
    folder = Path(folder)
    where = str(folder)
    hf = json.loads((folder / "config.json").read_text())
    arch = detect_architecture(hf, where)
    modality, head_kind, nested = ARCHITECTURES[arch]
    cfg = model_config_from_hf(hf, modality, where, head_kind)
    head = None
    if head_kind == "ctc":
        head = HeadConfig("ctc", int(hf["vocab_size"]))
    elif head_kind is not None:
        head = HeadConfig(head_kind, _num_labels(hf), final_norm=False)
    prefix = hk.PREFIX[modality] if nested else ""

    drops: dict[str, str] = {}
    state = hk.drop_keys(read_hf_state(folder), [(re.compile(p), r) for p, r in DROPPED.get(arch, [])], drops)
    if modality == "vision":
        state = hk.check_relative_position_index(state, cfg.input.image_size // cfg.input.patch_size, where, drops)
    if modality == "text":
        state = hk.fold_token_type(state, prefix, where)
    state = fuse_qkv(state, hk.QKV[modality], where)

    mask_key = {"audio": f"{prefix}masked_spec_embed", "vision": f"{prefix}embeddings.mask_token"}.get(modality)
    has_mask = head is None and mask_key in state
    if head is None:
        from data2vec.algorithms.data2vec1 import Data2Vec1Model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            expected = Data2Vec1Model(cfg).state_dict()
        fill = {k for k in expected if k.startswith("head.") or (k == "mask_emb" and not has_mask)}
    else:
        expected, fill = build_finetuned(cfg, head).state_dict(), set()
    keymap = _keymap(modality, prefix, cfg, head_kind, has_mask)
    out = map_state(state, keymap, {k: v for k, v in expected.items() if k not in fill}, where)
    out.update({k: expected[k].clone() for k in sorted(fill)})
    for key, reason in drops.items():
        log.warning("%s: not imported: %s (%s)", where, key, reason)
    if dropped is not None:
        dropped.update(drops)
    return cfg, head, out


# --------------------------------------------------------------------------- writing
def hf_config_from_ours(model_cfg: ModelConfig, head_cfg: Optional[HeadConfig], has_mask: bool) -> dict[str, Any]:
    """Keyword arguments for the transformers config class (ConfigError when not representable)."""
    modality, enc, inp = OUR_KIND.get(model_cfg.input.kind), model_cfg.encoder, model_cfg.input
    where = "export_hf"
    if modality is None:
        raise _err(where, "model.input.kind", model_cfg.input.kind, f"expected one of {sorted(OUR_KIND)}")
    common = dict(hidden_size=enc.dim, num_hidden_layers=enc.depth, num_attention_heads=enc.num_heads,
                  intermediate_size=int(enc.dim * enc.mlp_ratio), hidden_act="gelu", layer_norm_eps=enc.norm_eps)
    if modality in ("audio", "text"):
        if enc.norm_first or enc.layer_scale_init > 0:
            raise _err(where, "model.encoder.norm_first/layer_scale_init", (enc.norm_first, enc.layer_scale_init),
                       "HF audio/text layers are post-LN without layer scale")
        if inp.prenet_depth:
            raise _err(where, "model.input.prenet_depth", inp.prenet_depth, "HF has no modality prenet blocks")
    if modality == "audio":
        if inp.alibi:
            raise _err(where, "model.input.alibi", True, "HF audio has no ALiBi (data2vec 2.0)")
        if enc.norm_eps != 1e-5:
            raise _err(where, "model.encoder.norm_eps", enc.norm_eps, "HF uses layer_norm_eps for the feature "
                       "projection too, where ours is fixed at 1e-5")
        ctc = head_cfg is not None
        return dict(common, vocab_size=head_cfg.num_outputs if ctc else 32, hidden_dropout=enc.dropout,
                    attention_dropout=enc.attn_dropout, activation_dropout=enc.activation_dropout,
                    layerdrop=enc.layer_drop, feat_proj_dropout=0.0, final_dropout=0.0,
                    feat_extract_activation="gelu", conv_dim=[inp.conv_channels] * len(inp.conv_kernels),
                    conv_stride=list(inp.conv_strides), conv_kernel=list(inp.conv_kernels), conv_bias=False,
                    num_conv_pos_embeddings=inp.conv_pos_depth,
                    conv_pos_kernel_size=max(3, inp.conv_pos_width // inp.conv_pos_depth),
                    num_conv_pos_embedding_groups=inp.conv_pos_groups, pad_token_id=0,  # CTC blank = id 0, as ours
                    # HF builds masked_spec_embed only when SpecAugment is on: on for the bare model
                    # (it holds our mask_emb), off for CTC (ours has none; pass mask_time_prob to re-enable).
                    mask_time_prob=0.05 if has_mask else 0.0, mask_feature_prob=0.0)
    if modality == "text":
        kw = dict(common, vocab_size=inp.vocab_size, hidden_dropout_prob=enc.dropout,
                  attention_probs_dropout_prob=enc.attn_dropout, max_position_embeddings=inp.max_positions + inp.pad_id + 1,
                  type_vocab_size=1, pad_token_id=inp.pad_id, bos_token_id=0, eos_token_id=2)
        if head_cfg is not None:
            kw["num_labels"] = head_cfg.num_outputs
        return kw
    if head_cfg is not None and head_cfg.final_norm:
        raise _err(where, "head.final_norm", True, "HF mean pooling has no final LayerNorm before fc_norm")
    kw = dict(common, hidden_dropout_prob=enc.dropout, attention_probs_dropout_prob=enc.attn_dropout,
              image_size=inp.image_size, patch_size=inp.patch_size, num_channels=inp.in_chans,
              use_mask_token=has_mask, use_absolute_position_embeddings=False,
              use_relative_position_bias=inp.rel_pos_bias == "per_layer",
              use_shared_relative_position_bias=inp.rel_pos_bias == "shared",
              layer_scale_init_value=enc.layer_scale_init, drop_path_rate=enc.drop_path,
              use_mean_pooling=head_cfg is not None or not enc.final_norm)
    if head_cfg is not None:
        kw["num_labels"] = head_cfg.num_outputs
    return kw


def export_hf(model: nn.Module, model_cfg: ModelConfig, head_cfg: Optional[HeadConfig], folder: str | Path) -> Path:
    """Write `config.json` + `model.safetensors` for the transformers class matching the model.

    `model`: a `Data2Vec1Model` (head_cfg None; its data2vec regression head has no HF slot and
    is not written) or a `build_finetuned(model_cfg, head_cfg)` model. Bare text models get a
    deterministic HF pooler (N(0, 0.02) seeded, zero bias) because transformers requires one; it
    is not part of data2vec. The BEiT key bias is dropped (HF has none; exact in attention).
    """
    import transformers

    modality = OUR_KIND.get(model_cfg.input.kind, model_cfg.input.kind)
    head_kind = head_cfg.kind if head_cfg is not None else None
    arch = EXPORT_ARCH.get((modality, head_kind))
    if arch is None:
        raise _err("export_hf", "head.kind", head_kind, f"no transformers class for a {modality} model with it")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if head_cfg is None:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    has_mask = "mask_emb" in state and modality != "text"
    kwargs = hf_config_from_ours(model_cfg, head_cfg, has_mask)
    prefix = hk.PREFIX[modality] if head_cfg is not None else ""
    keymap = _keymap(modality, prefix, model_cfg, head_kind, has_mask).inverse()
    out = split_qkv(map_state(state, keymap, None, f"export_hf({arch})"), hk.QKV[modality])
    if modality == "text":
        out[f"{prefix}embeddings.token_type_embeddings.weight"] = torch.zeros(1, model_cfg.encoder.dim)
        if head_cfg is None:
            gen = torch.Generator().manual_seed(0)
            d = model_cfg.encoder.dim
            out["pooler.dense.weight"] = torch.randn(d, d, generator=gen) * 0.02
            out["pooler.dense.bias"] = torch.zeros(d)
    config_cls = {"audio": transformers.Data2VecAudioConfig, "text": transformers.Data2VecTextConfig,
                  "vision": transformers.Data2VecVisionConfig}[modality]
    config = config_cls(**kwargs)
    config.architectures = [arch]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config.to_json_file(str(folder / "config.json"))
    save_file({k: v.contiguous().clone() for k, v in out.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder
