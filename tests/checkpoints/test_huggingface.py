"""Hugging Face transformers import/export: numerical parity with random tiny transformers
models, exact round trips, strict key and config errors."""

from __future__ import annotations

import json

import pytest
import torch
import transformers  # a project dependency (pyproject.toml): its absence must fail, not skip

from data2vec.algorithms.data2vec1 import Data2Vec1Model
from data2vec.checkpoints.huggingface import export_hf, import_hf
from data2vec.checkpoints.keymaps import KeyMapError
from data2vec.config import ConfigError
from data2vec.models import build_finetuned

TOL = 1e-4
D, L, H = 32, 2, 2


def audio_config(**kw):
    args = dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=64, conv_dim=(16,) * 7,
                num_conv_pos_embedding_groups=4, num_conv_pos_embeddings=2, conv_pos_kernel_size=5, vocab_size=12)
    return transformers.Data2VecAudioConfig(**{**args, **kw})


def text_config(**kw):
    args = dict(vocab_size=99, hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=64,
                type_vocab_size=1, max_position_embeddings=40, layer_norm_eps=1e-5, num_labels=3)
    return transformers.Data2VecTextConfig(**{**args, **kw})


def vision_config(per_layer: bool, cls: bool, **kw):
    args = dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=64, image_size=28,
                patch_size=4, num_channels=1, use_relative_position_bias=per_layer,
                use_shared_relative_position_bias=not per_layer, use_mean_pooling=cls, use_mask_token=not cls,
                layer_norm_eps=1e-6, num_labels=5)
    return transformers.Data2VecVisionConfig(**{**args, **kw})


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial values everywhere (HF inits zero biases, unit norms, zero relative bias)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        p.copy_(p + 0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def make_hf(cls_name: str, config, tmp_path, seed: int = 0):
    torch.manual_seed(seed)
    model = randomize(getattr(transformers, cls_name)(config), seed)
    model.save_pretrained(tmp_path)
    return model


def audio_input():
    torch.manual_seed(3)
    wav = torch.randn(2, 4000)
    pad = torch.zeros(2, 4000, dtype=torch.bool)
    pad[1, 2900:] = True
    return wav.masked_fill(pad, 0.0), pad


def text_input(pad_id: int = 1):
    torch.manual_seed(4)
    tokens = torch.randint(3, 99, (2, 12))
    tokens[:, 0] = 0
    tokens[1, 8:] = pad_id
    return tokens, tokens.eq(pad_id)


def image_input():
    torch.manual_seed(5)
    return torch.randn(2, 1, 28, 28)


def hf_outputs(hf, modality, x, pad):
    if modality == "audio":
        return hf(x, attention_mask=(~pad).long(), output_hidden_states=True)
    if modality == "text":
        return hf(x, attention_mask=(~pad).long(), output_hidden_states=True)
    return hf(x, output_hidden_states=True)


@torch.no_grad()
def ours_outputs(model, x, pad):
    """(block outputs, final features, padding mask of the features, logits or None)."""
    feats, fpad = model.modality.local_features(x, pad)
    ctx = model.modality.contextualize(feats, fpad, None)
    out = model.encoder(ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias)
    logits = model.head(out.x) if not isinstance(model, Data2Vec1Model) else None
    return out.block_outputs, out.x, fpad, logits


def max_diff(a, b, keep=None):
    """max |a - b| over the real positions (keep: (B, T) bool) or everywhere."""
    d = (a - b).abs()
    if keep is not None:
        d = d[keep]
    return d.max().item()


def check_parity(hf, ours, modality, task: bool):
    x, pad = {"audio": audio_input, "text": text_input, "vision": lambda: (image_input(), None)}[modality]()
    with torch.no_grad():
        ho = hf_outputs(hf, modality, x, pad)
    blocks, final, fpad, logits = ours_outputs(ours, x, pad if modality != "vision" else None)
    keep = None if fpad is None else ~fpad
    diffs = {}
    # HF hidden_states: the input to layer 0, then each layer's output (before a final norm).
    for i, blk in enumerate(blocks):
        diffs[f"layer{i}"] = max_diff(ho.hidden_states[i + 1], blk, keep)
    if not task:
        diffs["final"] = max_diff(ho.last_hidden_state, final, keep)
    else:
        diffs["logits"] = max_diff(ho.logits, logits, keep if modality == "audio" else None)
    assert all(v <= TOL for v in diffs.values()), diffs
    return diffs


CASES = [
    ("audio", "Data2VecAudioModel", audio_config),
    ("audio", "Data2VecAudioForCTC", audio_config),
    ("text", "Data2VecTextModel", text_config),
    ("text", "Data2VecTextForSequenceClassification", text_config),
    ("vision", "Data2VecVisionModel", lambda: vision_config(False, False)),
    ("vision", "Data2VecVisionModel", lambda: vision_config(True, False)),
    ("vision", "Data2VecVisionForImageClassification", lambda: vision_config(True, True)),
    ("vision", "Data2VecVisionForImageClassification", lambda: vision_config(False, True)),
    # transformers' default for the bare model: mean pooling, so no final LayerNorm
    ("vision", "Data2VecVisionModel", lambda: vision_config(False, True)),
    ("vision", "Data2VecVisionModel", lambda: vision_config(True, True, use_mask_token=True)),
]
IDS = [f"{c[1]}-{i}" for i, c in enumerate(CASES)]


def load_ours(folder, dropped=None):
    cfg, head, state = import_hf(folder, dropped=dropped)
    model = Data2Vec1Model(cfg) if head is None else build_finetuned(cfg, head)
    model.load_state_dict(state, strict=True)
    return cfg, head, model.eval()


@pytest.mark.parametrize("modality,cls_name,make_config", CASES, ids=IDS)
def test_import_matches_transformers(modality, cls_name, make_config, tmp_path):
    hf = make_hf(cls_name, make_config(), tmp_path)
    dropped: dict[str, str] = {}
    cfg, head, ours = load_ours(tmp_path, dropped)
    assert cfg.version == 1 and cfg.encoder.dim == D and cfg.encoder.depth == L
    assert (head is None) == cls_name.endswith("Model")
    check_parity(hf, ours, modality, head is not None)
    if cls_name == "Data2VecTextModel":
        assert set(dropped) == {"pooler.dense.weight", "pooler.dense.bias"}
    if cls_name == "Data2VecAudioForCTC":
        assert set(dropped) == {"data2vec_audio.masked_spec_embed"}


@pytest.mark.parametrize("modality,cls_name,make_config", CASES, ids=IDS)
def test_export_loads_in_transformers_and_round_trips(modality, cls_name, make_config, tmp_path):
    make_hf(cls_name, make_config(), tmp_path / "src")
    cfg, head, ours = load_ours(tmp_path / "src")
    randomize(ours, seed=7)  # weights of ours that never came from HF
    with torch.no_grad():  # HF vision has no key bias; ours keeps one that cannot matter
        if modality == "vision":
            for blk in ours.encoder.blocks:
                blk.attn.qkv.bias[D:2 * D] = 0.0
    export_hf(ours, cfg, head, tmp_path / "out")
    hf, info = getattr(transformers, cls_name).from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    check_parity(hf.eval(), ours, modality, head is not None)
    cfg2, head2, state = import_hf(tmp_path / "out")
    assert cfg2 == cfg and head2 == head
    for k, v in ours.state_dict().items():
        if k.startswith("head.") and head is None:
            continue  # the data2vec regression head has no HF slot
        assert torch.equal(state[k], v), k


def test_vision_key_bias_is_dropped_exactly(tmp_path):
    make_hf("Data2VecVisionModel", vision_config(False, False), tmp_path / "src")
    cfg, head, ours = load_ours(tmp_path / "src")
    with torch.no_grad():
        for blk in ours.encoder.blocks:
            blk.attn.qkv.bias[D:2 * D] = torch.randn(D)
    export_hf(ours, cfg, head, tmp_path / "out")
    hf = transformers.Data2VecVisionModel.from_pretrained(tmp_path / "out").eval()
    check_parity(hf, ours, "vision", False)


def test_token_type_row_is_folded_into_positions(tmp_path):
    hf = make_hf("Data2VecTextModel", text_config(), tmp_path)
    _, _, state = import_hf(tmp_path)
    tt = hf.embeddings.token_type_embeddings.weight[0]
    assert torch.allclose(state["modality.local_encoder.embed_positions.weight"],
                          hf.embeddings.position_embeddings.weight + tt)


def test_text_masked_lm_imports_the_backbone(tmp_path):
    hf = make_hf("Data2VecTextForMaskedLM", text_config(), tmp_path)
    dropped: dict[str, str] = {}
    _, head, ours = load_ours(tmp_path, dropped)
    assert head is None and all(k.startswith("lm_head.") for k in dropped) and dropped
    tokens, pad = text_input()
    with torch.no_grad():
        ref = hf.data2vec_text(tokens, attention_mask=(~pad).long()).last_hidden_state
    assert max_diff(ref, ours_outputs(ours, tokens, pad)[1], ~pad) <= TOL


def test_pytorch_model_bin_is_read_with_weights_only(tmp_path):
    hf = make_hf("Data2VecTextModel", text_config(), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    _, _, ours = load_ours(tmp_path)
    check_parity(hf, ours, "text", False)


def _rewrite_weights(folder, fn):
    from safetensors.torch import load_file, save_file

    state = fn(load_file(str(folder / "model.safetensors")))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_unknown_key_is_an_error_naming_it(tmp_path):
    make_hf("Data2VecAudioModel", audio_config(), tmp_path)
    _rewrite_weights(tmp_path, lambda s: {**s, "encoder.extra_thing.weight": torch.zeros(2)})
    with pytest.raises(KeyMapError, match="encoder.extra_thing.weight"):
        import_hf(tmp_path)


def test_missing_projection_is_an_error_naming_it(tmp_path):
    make_hf("Data2VecTextModel", text_config(), tmp_path)
    _rewrite_weights(tmp_path, lambda s: {k: v for k, v in s.items() if k != "encoder.layer.1.attention.self.key.weight"})
    with pytest.raises(KeyMapError, match=r"encoder\.layer\.1\.attention\.self\.key\.weight"):
        import_hf(tmp_path)


@pytest.mark.parametrize("cls_name,config,field", [
    ("Data2VecVisionModel", lambda: vision_config(False, False, use_absolute_position_embeddings=True),
     "use_absolute_position_embeddings"),
    ("Data2VecVisionForImageClassification", lambda: vision_config(False, True, use_mean_pooling=False),
     "use_mean_pooling"),
    ("Data2VecAudioModel", lambda: audio_config(conv_bias=True), "conv_bias"),
    ("Data2VecTextModel", lambda: text_config(type_vocab_size=2), "type_vocab_size"),
    ("Data2VecTextModel", lambda: text_config(hidden_act="relu"), "hidden_act"),
])
def test_unsupported_config_is_a_clear_error(cls_name, config, field, tmp_path):
    make_hf(cls_name, config(), tmp_path)
    with pytest.raises(ConfigError, match=field):
        import_hf(tmp_path)


@pytest.mark.parametrize("field,value", [("feat_extract_norm", "group"), ("do_stable_layer_norm", True)])
def test_foreign_audio_layouts_are_refused(field, value, tmp_path):
    make_hf("Data2VecAudioModel", audio_config(), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg[field] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=field):
        import_hf(tmp_path)


@pytest.mark.parametrize("modality,cls_name,make_config", [CASES[0], CASES[4]], ids=["audio", "vision"])
def test_mask_embedding_matches_transformers_masking(modality, cls_name, make_config, tmp_path):
    """HF `mask_time_indices` / `bool_masked_pos` replace features by the mask embedding, as our
    data2vec 1.0 student does with `mask_emb`."""
    hf = make_hf(cls_name, make_config(), tmp_path)
    _, _, ours = load_ours(tmp_path)
    x = audio_input()[0] if modality == "audio" else image_input()
    with torch.no_grad():
        feats, _ = ours.modality.local_features(x, None)
        mask = torch.zeros(feats.shape[:2], dtype=torch.bool)
        mask[:, 1::3] = True
        kw = {"mask_time_indices": mask} if modality == "audio" else {"bool_masked_pos": mask}
        ref = hf(x, **kw).last_hidden_state
        student = torch.where(mask[..., None], ours.mask_emb, feats)
        ctx = ours.modality.contextualize(student, None, None)
        got = ours.encoder(ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias).x
    assert max_diff(ref, got) <= TOL


@pytest.mark.parametrize("modality,cls_name,make_config", [CASES[1], CASES[3], CASES[6]], ids=[IDS[1], IDS[3], IDS[6]])
def test_cli_convert_hf_to_ours_and_back(modality, cls_name, make_config, tmp_path, capsys):
    from data2vec.checkpoints.pretrained import from_pretrained
    from data2vec.cli import main

    hf = make_hf(cls_name, make_config(), tmp_path / "hf")
    assert main(["inspect", str(tmp_path / "hf")]) == 0
    shown = capsys.readouterr().out
    assert "Hugging Face transformers folder" in shown and "data2vec 1.0" in shown and "outputs" in shown
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0  # format detected
    model, cfg, teacher = from_pretrained(tmp_path / "ours")
    assert teacher is None and cfg.model.version == 1
    check_parity(hf, model.eval(), modality, task=True)
    assert main(["convert", str(tmp_path / "ours"), "--to", "hf", str(tmp_path / "back")]) == 0
    back, info = getattr(transformers, cls_name).from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    check_parity(back.eval(), model, modality, task=True)  # (text: token types folded into positions)


def test_truncated_weights_are_an_error_naming_the_file(tmp_path):
    make_hf("Data2VecTextModel", text_config(), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        import_hf(tmp_path)
