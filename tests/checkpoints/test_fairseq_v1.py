"""data2vec 1.0 (fairseq speech/text, BEiT-repository vision), fine-tuned wrappers and
`convert --to fairseq`: exact imports, explicit drops, clear errors, exact round trips."""

from __future__ import annotations

import argparse

import pytest
import torch

from data2vec.checkpoints.fairseq_v1 import export_fairseq, import_checkpoint
from data2vec.checkpoints.keymaps import KeyMapError
from data2vec.checkpoints.load import read_checkpoint, read_weights
from data2vec.checkpoints.pretrained import from_pretrained, read_head, save_pretrained
from data2vec.checkpoints.unpickle import CheckpointReadError
from data2vec.cli import main
from data2vec.config import ConfigError
from data2vec.data.synthetic import synthetic_batch
from data2vec.heads.finetuned import HeadConfig
from data2vec.models import build_finetuned, build_model

from .conftest import audio_state_by_hand, beit_index, beit_state_by_hand, make_v1_model, tiny_v1_config

HEADS = {"audio": HeadConfig("ctc", 7), "text": HeadConfig("sequence_classification", 3),
         "beit": HeadConfig("image_classification", 5, final_norm=False)}


def _batch(cfg) -> dict:
    torch.manual_seed(1)
    return synthetic_batch(cfg.model.input, 2)


def _out(model, cfg) -> torch.Tensor:
    batch = _batch(cfg)
    x, pad = batch[model.modality.input_key], batch.get("padding_mask")
    with torch.no_grad():
        return model(x, pad) if hasattr(model, "features") else model.extract_features(x, pad).x


def _exact(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _rebuild(imp):
    model = build_model(imp.cfg.model, imp.head)
    model.eval().load_state_dict(imp.student)
    return model


@pytest.mark.parametrize("kind", ["audio", "text", "beit"])
def test_v1_pretraining_files_import_exactly(kind, write_v1):
    path, cfg, model, teacher = write_v1(kind)
    imp = import_checkpoint(path)
    assert imp.cfg.model == cfg.model and imp.head is None
    _exact(imp.student, model.state_dict())
    assert torch.equal(_out(_rebuild(imp), cfg), _out(model, cfg))
    _exact(imp.teacher, teacher.state_dict())  # from `_ema` / `encoder._ema` / `model_ema`


@pytest.mark.parametrize("kind", ["audio", "text", "beit"])
def test_fine_tuned_wrappers_import_exactly(kind, write_v1):
    path, cfg, model, _ = write_v1(kind, HEADS[kind])
    imp = import_checkpoint(path)
    assert imp.head == HEADS[kind] and imp.teacher is None and imp.cfg.model == cfg.model
    _exact(imp.student, model.state_dict())
    assert torch.equal(_out(_rebuild(imp), cfg), _out(model, cfg))


def test_hand_written_beit_file_with_ema_and_args(tmp_path):
    cfg, model, teacher = make_v1_model("beit")
    _, ema_src, _ = make_v1_model("beit", seed=1)  # a whole-model EMA, as timm's ModelEmaV2
    grid = cfg.model.input.image_size // cfg.model.input.patch_size
    args = argparse.Namespace(model="beit_base_patch16_224", layer_scale_init_value=cfg.model.encoder.layer_scale_init,
                              drop_path=cfg.model.encoder.drop_path, target_layers=[0, 1], lr=2e-3)
    path = tmp_path / "checkpoint-799.pth"
    torch.save({"model": beit_state_by_hand(model, grid), "model_ema": beit_state_by_hand(ema_src, grid),
                "args": args, "epoch": 799, "optimizer": {"state": {}}}, path)
    imp = import_checkpoint(path)
    assert imp.source == "BEiT repository .pth" and imp.cfg.model == cfg.model
    _exact(imp.student, model.state_dict())
    assert torch.equal(_out(_rebuild(imp), cfg), _out(model, cfg))
    ema_teacher = ema_src.make_teacher().module.state_dict()
    _exact(imp.teacher, ema_teacher)
    dropped = dict(imp.dropped)
    assert "model.rel_pos_bias.relative_position_index" in dropped
    assert {"model_ema.mask_token", "model_ema.lm_head.weight"} <= dropped.keys()
    # heads come from the bias table; a contradicting --num-heads is refused
    with pytest.raises(ConfigError, match="num_heads=4 given"):
        import_checkpoint(path, num_heads=4)


def test_hand_written_beit_fine_tuned_file(tmp_path):
    cfg, model, _ = make_v1_model("beit", HEADS["beit"])
    grid = cfg.model.input.image_size // cfg.model.input.patch_size
    path = tmp_path / "ft.pth"
    torch.save({"model": beit_state_by_hand(model, grid, finetuned=True)}, path)
    imp = import_checkpoint(path)
    assert imp.head == HEADS["beit"] and imp.cfg.model.input.rel_pos_bias == "per_layer"
    assert torch.equal(_out(_rebuild(imp), cfg), _out(model, cfg))


def test_hand_written_released_audio_file(fake_omegaconf, tmp_path):
    cfg, model, _ = make_v1_model("audio")
    enc, inp = cfg.model.encoder, cfg.model.input
    model_cfg = {  # the fields of base_librispeech.yaml, plus a debug field of the released file (#4323)
        "_name": "data2vec_audio", "extractor_mode": "layer_norm", "encoder_layerdrop": 0.05, "dropout_input": 0.0,
        "dropout_features": 0.0, "feature_grad_mult": 1.0, "encoder_embed_dim": enc.dim, "encoder_layers": enc.depth,
        "encoder_attention_heads": enc.num_heads, "encoder_ffn_embed_dim": 4 * enc.dim,
        "conv_feature_layers": f"[({inp.conv_channels}, 10, 5)] + [({inp.conv_channels}, 3, 2)] * 4 + "
                               f"[({inp.conv_channels},2,2)] + [({inp.conv_channels},2,2)]",
        "conv_pos": 95, "conv_pos_groups": inp.conv_pos_groups, "pos_conv_depth": 5, "layer_norm_first": False,
        "mask_prob": 0.65, "mask_length": 10, "average_top_k_layers": cfg.model.targets.top_k,
        "instance_norm_target_layer": True, "loss_beta": 0, "loss_scale": None, "ema_decay": 0.999,
        "ema_end_decay": 0.9999, "ema_anneal_end_step": "${optimization.max_update}", "ema_transformer_only": True,
        "ema_layers_only": False, "min_target_var": 0.1, "min_pred_var": 0.01, "diversity_weight": 0.1,
    }
    path = tmp_path / "audio_base_ls.pt"
    stored = {"model": model_cfg, "optimization": {"max_update": 400000}}
    torch.save({"cfg": fake_omegaconf(stored), "model": audio_state_by_hand(model)}, path)
    imp = import_checkpoint(path)
    _exact(imp.student, model.state_dict())  # `final_proj.0.*` became the head
    assert torch.equal(_out(_rebuild(imp), cfg), _out(model, cfg))
    m = imp.cfg.model
    assert m.teacher.anneal_steps == 400000 and m.encoder.layer_drop == 0.05
    assert m.teacher.copied == ()  # ema_layers_only false: the positional convs are averaged too


def test_text_legacy_names_are_renamed(write_v1):
    def legacy(ckpt: dict) -> None:
        s = ckpt["model"]
        for k in list(s):
            new = k.replace(".regression_head.", ".lm_head.").replace(".layernorm_embedding.", ".emb_layer_norm.")
            s[new.replace("encoder.", "decoder.", 1) if "sentence_encoder.layers.0." in k else new] = s.pop(k)
        ema = s["encoder._ema"]
        for k in [k for k in ema if k.startswith(("embed_", "layernorm_embedding"))]:
            ema.pop(k)  # fairseq copies these from the student (skip_keys)

    path, cfg, model, teacher = write_v1("text", mutate=legacy)
    imp = import_checkpoint(path)
    _exact(imp.student, model.state_dict())
    t = teacher.state_dict()
    for k, v in imp.teacher.items():
        want = model.state_dict()[k] if k.startswith("modality.local_encoder") else t[k]
        assert torch.equal(v, want), k
    assert "model.encoder.sentence_encoder.version" in dict(imp.dropped)


def test_pretraining_only_keys_of_fine_tuned_files_are_listed(write_v1):
    def add(ckpt: dict) -> None:
        ckpt["model"]["w2v_encoder.w2v_model.final_proj.weight"] = torch.zeros(2, 2)

    path, *_ = write_v1("audio", HEADS["audio"], mutate=add)
    dropped = dict(import_checkpoint(path).dropped)
    assert "training only" in dropped["model.w2v_encoder.w2v_model.mask_emb"]
    assert "pretraining module" in dropped["model.w2v_encoder.w2v_model.final_proj.weight"]


def _set(key: str, value):
    return lambda ckpt: ckpt["model"].__setitem__(key, value)


@pytest.mark.parametrize("kind,head,mutate,error,message", [
    ("audio", None, _set("encoder.layers.0.bogus.weight", torch.zeros(1)), KeyMapError,
     "unknown key 'encoder.layers.0.bogus.weight'"),
    ("audio", None, lambda c: c["model"].pop("encoder.layers.1.self_attn.k_proj.bias"), KeyMapError,
     "missing key 'encoder.layers.1.self_attn.k_proj.bias'"),
    ("text", None, _set("encoder.sentence_encoder.layers.0.fc1.weight", torch.zeros(3, 3)), KeyMapError,
     "'encoder.sentence_encoder.layers.0.fc1.weight' has shape (3, 3)"),
    ("text", None, lambda c: c["model"]["encoder._ema"].__setitem__("stray", torch.zeros(1)), KeyMapError,
     "[model.encoder._ema]: unknown key 'stray'"),
    ("beit", None, _set("pos_embed", torch.zeros(1, 197, 32)), KeyMapError, "unknown key 'pos_embed'"),
    ("beit", None, lambda c: c["model"].pop("blocks.1.gamma_2"), KeyMapError, "'encoder.blocks.1.gamma_2'"),
    ("beit", None, _set("rel_pos_bias.relative_position_index", torch.zeros(3, 3, dtype=torch.long)), KeyMapError,
     "expected BEiT's index (197, 197)"),
    ("audio", HEADS["audio"], lambda c: c["cfg"]._content["model"]._content.pop("w2v_args"), CheckpointReadError,
     "w2v_args holds no pretraining config"),
])
def test_bad_files_are_errors_that_name_the_key(kind, head, mutate, error, message, write_v1):
    path, *_ = write_v1(kind, head, mutate=mutate)
    with pytest.raises(error) as err:
        import_checkpoint(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_truncated_v1_file_is_a_clear_error(write_v1, tmp_path):
    path, *_ = write_v1("beit")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointReadError, match="not a readable torch checkpoint"):
        import_checkpoint(cut)


def test_beit_export_refuses_a_non_zero_k_bias(tmp_path):
    cfg, model, _ = make_v1_model("beit")
    state = model.state_dict()
    state["encoder.blocks.0.attn.qkv.bias"][40] = 0.5  # a k entry (dim 32: k is 32..63)
    with pytest.raises(ValueError, match="non-zero k part"):
        export_fairseq(tmp_path / "x.pth", cfg, state)
    export_fairseq(tmp_path / "x.pth", cfg, state, drop_k_bias=True)
    imp = import_checkpoint(tmp_path / "x.pth")
    assert torch.equal(imp.student["encoder.blocks.0.attn.qkv.bias"][32:64], torch.zeros(32))


def test_fine_tuned_folder_round_trip(tmp_path):
    cfg, model, _ = make_v1_model("audio", HEADS["audio"])
    save_pretrained(model, cfg, tmp_path / "ft", head=HEADS["audio"])
    assert read_head(tmp_path / "ft") == HEADS["audio"]
    loaded, new_cfg, teacher = from_pretrained(tmp_path / "ft")
    assert new_cfg == cfg and teacher is None
    _exact(loaded.state_dict(), model.state_dict())
    with pytest.raises(ValueError, match="fine-tuned model"):
        read_weights(tmp_path / "ft")
    assert read_checkpoint(tmp_path / "ft").head == HEADS["audio"]


CASES = [("audio", None), ("text", None), ("beit", None), ("audio", "ctc"), ("text", "seq"), ("beit", "img"),
         ("image2", None), ("audio2", "ctc")]


@pytest.mark.parametrize("kind,head", CASES)
def test_ours_to_fairseq_to_ours_is_exact(kind, head, tmp_path, tiny_model, capsys):
    if kind.endswith("2"):  # data2vec 2.0
        cfg, model, teacher = tiny_model(kind[:-1])
        hc = HEADS["audio"] if head else None
        if head:
            model, teacher = build_finetuned(cfg.model, hc).eval(), None
    else:
        hc = HEADS[kind] if head else None
        cfg, model, teacher = make_v1_model(kind, hc)
    ours, pt, back = tmp_path / "ours", tmp_path / "model.pt", tmp_path / "back"
    save_pretrained(model, cfg, ours, teacher=teacher, head=hc)
    assert main(["convert", str(ours), "--to", "fairseq", str(pt)]) == 0
    assert main(["convert", str(pt), str(back)]) == 0
    loaded, new_cfg, new_teacher = from_pretrained(back)
    assert new_cfg.model == cfg.model and read_head(back) == hc
    _exact(loaded.state_dict(), model.state_dict())
    if teacher is not None:
        _exact(new_teacher, teacher.state_dict())
    assert "wrote" in capsys.readouterr().out


def test_cli_convert_and_inspect_a_v1_file(write_v1, tmp_path, capsys):
    path, cfg, model, _ = write_v1("beit")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "BEiT repository .pth" in out and "data2vec 1.0" in out and "beit" in out
    assert "see the source repository's license" in out and "fine-tuned head: none" in out
    assert main(["convert", str(path), str(tmp_path / "ours")]) == 0
    assert "left out model.rel_pos_bias.relative_position_index" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "ours")]) == 0
    out = capsys.readouterr().out
    assert "converted from" in out and "see the source repository's license" in out
    ctc, *_ = write_v1("audio", HEADS["audio"])
    assert main(["inspect", str(ctc)]) == 0
    out = capsys.readouterr().out
    assert "fairseq wav2vec_ctc (data2vec_audio)" in out and "ctc, 7 outputs" in out and "left out" in out


def test_beit_index_transcription_matches_ours():
    from data2vec.nn.relpos import relative_position_index

    assert torch.equal(beit_index(3, 3), relative_position_index(3, 3))
    assert tiny_v1_config("beit").model.input.kind == "beit"
