"""fairseq data2vec 2.0 import: exact round trips, legacy keys, refusals with clear errors."""

from __future__ import annotations

import argparse
import collections
import os

import pytest
import torch

from data2vec.algorithms.data2vec2 import Data2Vec2Model
from data2vec.checkpoints.fairseq import import_fairseq, parse_conv_spec
from data2vec.checkpoints.keymaps import KeyMapError
from data2vec.checkpoints.unpickle import CheckpointReadError, UnsafeCheckpointError, load_checkpoint
from data2vec.cli import main
from data2vec.config import ConfigError
from data2vec.data.synthetic import synthetic_batch

KINDS = ["image", "audio", "text"]


def sample_input(cfg) -> dict:
    torch.manual_seed(1)
    return synthetic_batch(cfg.model.input, 2)


def features(model: Data2Vec2Model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.extract_features(batch[model.modality.input_key], batch.get("padding_mask")).x


@pytest.mark.parametrize("kind,plain_cfg", [(k, False) for k in KINDS] + [("text", True)])
def test_fairseq_round_trip_is_exact(kind, plain_cfg, write_fairseq):
    path, cfg, model, teacher = write_fairseq(kind, plain_cfg=plain_cfg)
    new_cfg, student, teacher_state = import_fairseq(path)
    assert new_cfg.model == cfg.model  # every stored field came back, interpolations resolved
    restored = Data2Vec2Model(new_cfg.model).eval()
    restored.load_state_dict(student)
    for k, v in model.state_dict().items():
        assert torch.equal(student[k], v), k
    batch = sample_input(cfg)
    assert torch.equal(features(restored, batch), features(model, batch))
    assert teacher_state is not None and teacher_state.keys() == teacher.state_dict().keys()
    for k, v in teacher.state_dict().items():
        assert torch.equal(teacher_state[k], v), k
    restored.make_teacher().module.load_state_dict(teacher_state)


def test_text_ema_keys_are_relative_to_the_blocks(write_fairseq):
    path, *_ = write_fairseq("text")
    ema = load_checkpoint(path)["model"]["_ema"]
    assert "0.attn.qkv.weight" in ema and not any(k.startswith("modality") for k in ema)


def test_config_objects_and_numpy_extra_state_become_plain_data(write_fairseq):
    path, cfg, *_ = write_fairseq("image")
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt["cfg"], dict) and ckpt["cfg"]["model"]["depth"] == cfg.model.encoder.depth
    assert ckpt["cfg"]["model"]["modalities"]["image"]["decoder"]["decoder_dim"] == "${model.embed_dim}"
    assert ckpt["extra_state"]["val_loss"] == 1.5 and list(ckpt["extra_state"]["lr"]) == [0.0, 1.0, 2.0]


def test_argparse_namespaces_become_dicts(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"args": argparse.Namespace(arch="data2vec_audio", lr=[5e-4]), "empty": argparse.Namespace(),
                "model": collections.OrderedDict(w=torch.ones(2))}, path)
    ckpt = load_checkpoint(path)
    assert ckpt["args"] == {"arch": "data2vec_audio", "lr": [5e-4]} and ckpt["empty"] == {}
    assert torch.equal(ckpt["model"]["w"], torch.ones(2))


def test_without_ema_there_is_no_teacher(write_fairseq):
    path, *_ = write_fairseq("audio", with_ema=False)
    assert import_fairseq(path)[2] is None


def _legacy_image(state: dict) -> None:
    m = "modality_encoders.IMAGE."
    state[m + "positional_encoder.pos_embed"] = state.pop(m + "fixed_positional_encoder.positions")
    state["_ema"].pop(m + "fixed_positional_encoder.positions")  # frozen: taken from the student
    state[m + "encoder_mask"] = torch.zeros(3)
    state[m + "alibi_bias"] = torch.zeros(1, 2, 3, 3)
    state["decoder.proj.weight"] = torch.zeros(2, 2)
    state["target_proj.weight"] = torch.zeros(2, 2)


def _legacy_audio(state: dict) -> None:
    key = "modality_encoders.AUDIO.alibi_scale"
    state[key] = state[key].reshape(1, -1, 1, 1)  # older files stored a 4-D scale
    state["modality_encoders.AUDIO.encoder_mask"] = torch.zeros(3)


@pytest.mark.parametrize("kind,mutate", [("image", _legacy_image), ("audio", _legacy_audio)])
def test_legacy_keys_are_fixed(kind, mutate, write_fairseq):
    path, cfg, model, teacher = write_fairseq(kind, mutate)
    _, student, teacher_state = import_fairseq(path)
    for k, v in model.state_dict().items():
        assert torch.equal(student[k], v), k
    for k, v in teacher.state_dict().items():
        if k != "modality.positions":
            assert torch.equal(teacher_state[k], v), k
    if kind == "image":
        assert torch.equal(teacher_state["modality.positions"], model.modality.positions)


def _add(key: str, value: torch.Tensor):
    return lambda s: s.__setitem__(key, value)


@pytest.mark.parametrize("mutate,message", [
    (_add("modality_encoders.IMAGE.bogus.weight", torch.zeros(1)), "unknown key 'modality_encoders.IMAGE.bogus.weight'"),
    (_add("blocks.0.attn.qkv.weight", torch.zeros(5, 5)), "key 'blocks.0.attn.qkv.weight' has shape (5, 5)"),
    (lambda s: s.pop("blocks.1.mlp.fc2.bias"), "missing key(s) for the model's 'encoder.blocks.1.mlp.fc2.bias'"),
    (lambda s: s["_ema"].pop("blocks.0.norm1.weight"), "[model._ema]: missing key(s)"),
])
def test_bad_keys_are_errors_that_name_them(mutate, message, write_fairseq):
    path, *_ = write_fairseq("image", mutate)
    with pytest.raises(KeyMapError) as err:
        import_fairseq(path)
    assert message in str(err.value) and str(path) in str(err.value)


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"model": {}, "cfg": _RunsCode(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"references (posix|os)\.system, which is not allowed") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    assert main(["inspect", str(path)]) == 2
    assert "which is not allowed" in capsys.readouterr().err
    assert not marker.exists()


def test_truncated_and_foreign_files_give_clear_errors(write_fairseq, tmp_path):
    path, *_ = write_fairseq("text")
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match="not a readable torch checkpoint") as err:
        load_checkpoint(cut)
    assert str(cut) in str(err.value)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointReadError, match=str(text)):
        load_checkpoint(text)
    with pytest.raises(CheckpointReadError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("kind,section,field,value", [
    ("image", "modality", "use_alibi_encoder", True),
    ("audio", "modality", "extractor_mode", "default"),
    ("text", "model", "layer_norm_first", True),
])
def test_settings_we_cannot_reproduce_are_named(kind, section, field, value, write_fairseq):
    def edit(model_cfg: dict) -> None:
        (model_cfg if section == "model" else model_cfg["modalities"][kind])[field] = value

    path, *_ = write_fairseq(kind, mutate_cfg=edit)
    with pytest.raises(ConfigError, match=f"{field}={value!r} is not supported"):
        import_fairseq(path)


def test_other_model_types_are_named(fake_omegaconf, tmp_path):
    path = tmp_path / "w2v.pt"
    torch.save({"cfg": fake_omegaconf({"model": {"_name": "wav2vec_ctc"}}), "model": {}}, path)
    with pytest.raises(CheckpointReadError, match="'wav2vec_ctc'"):
        import_fairseq(path)


def test_conv_spec_is_parsed_without_eval():
    assert parse_conv_spec("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    with pytest.raises(ValueError):
        parse_conv_spec("__import__('os').system('x')")
