"""Our safetensors format and the convert/inspect verbs."""

from __future__ import annotations

import pickle

import pytest
import torch

from data2vec.algorithms.data2vec2 import Data2Vec2Model
from data2vec.checkpoints.pretrained import MODEL_FILE, TEACHER_FILE, from_pretrained, read_metadata, save_pretrained
from data2vec.cli import main


def _exact(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def _no_pickle(*args, **kwargs):
    raise AssertionError("loading our format must not unpickle")


@pytest.mark.parametrize("kind", ["image", "audio", "text"])
def test_save_and_load_round_trip_is_exact(kind, tiny_model, tmp_path, monkeypatch):
    cfg, model, teacher = tiny_model(kind)
    save_pretrained(model, cfg, tmp_path / "ck", teacher=teacher, metadata={"source": "unit"})
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, _no_pickle)
    monkeypatch.setattr(torch, "load", _no_pickle)
    loaded, new_cfg, teacher_state = from_pretrained(tmp_path / "ck")
    assert new_cfg == cfg and isinstance(loaded, Data2Vec2Model)
    _exact(loaded.state_dict(), model.state_dict())
    _exact(teacher_state, teacher.state_dict())
    assert read_metadata(tmp_path / "ck" / MODEL_FILE)["source"] == "unit"


def test_wrapped_models_are_saved_unwrapped_and_stale_teachers_removed(tiny_model, tmp_path):
    cfg, model, teacher = tiny_model("text")
    save_pretrained(model, cfg, tmp_path, teacher=teacher)
    save_pretrained(_Wrapper(model), cfg, tmp_path)
    assert not (tmp_path / TEACHER_FILE).exists()
    loaded, _, teacher_state = from_pretrained(tmp_path)
    assert teacher_state is None
    _exact(loaded.state_dict(), model.state_dict())


class _Wrapper(torch.nn.Module):
    """Stands in for DDP's `module.` prefix."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module


def test_loading_names_the_bad_file_and_key(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    cfg, model, _ = tiny_model("text")
    save_pretrained(model, cfg, tmp_path)
    state = load_file(str(tmp_path / MODEL_FILE))
    state["encoder.blocks.0.norm1.weight"] = torch.zeros(3)
    save_file(state, str(tmp_path / MODEL_FILE))
    with pytest.raises(KeyError, match=r"model\.safetensors: key 'encoder\.blocks\.0\.norm1\.weight' has shape \(3,\)"):
        from_pretrained(tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a data2vec checkpoint folder"):
        from_pretrained(tmp_path / "nothing")


def test_convert_and_inspect_verbs(write_fairseq, tmp_path, capsys):
    path, cfg, model, teacher = write_fairseq("image")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fairseq checkpoint (data2vec_multi)" in out and "modality:" in out and "CC-BY-NC" in out
    assert "teacher:" in out and "yes" in out
    dst = tmp_path / "ours"
    assert main(["convert", "--from", "fairseq", str(path), "--to", "ours", str(dst)]) == 0
    assert "with EMA teacher" in capsys.readouterr().out
    loaded, new_cfg, teacher_state = from_pretrained(dst)
    _exact(loaded.state_dict(), model.state_dict())
    _exact(teacher_state, teacher.state_dict())
    assert main(["inspect", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "data2vec 2.0" in out and "image.pt (fairseq data2vec_multi)" in out and "CC-BY-NC" in out
    again = tmp_path / "again"
    assert main(["convert", str(dst), str(again), "--no-teacher"]) == 0
    assert not (again / TEACHER_FILE).exists()
    assert read_metadata(again / MODEL_FILE)["source"] == "image.pt"  # provenance (license) survives
    assert main(["convert", str(tmp_path / "missing.pt"), str(again)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_an_ema_teacher_object_is_saved_as_its_module(tiny_model, tmp_path):
    from data2vec.algorithms.ema import EMATeacher

    cfg, model, _ = tiny_model("audio")
    ema = model.make_teacher()
    assert isinstance(ema, EMATeacher)
    save_pretrained(model, cfg, tmp_path, teacher=ema)
    _exact(from_pretrained(tmp_path)[2], ema.module.state_dict())
