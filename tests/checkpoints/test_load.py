"""`load_model` / `read_checkpoint`: one loader for every format, detected by content."""

from __future__ import annotations

import pytest
import torch

from data2vec import load_model, read_checkpoint
from data2vec.checkpoints.load import TRAIN_FORMAT, detect_format
from data2vec.checkpoints.pretrained import save_pretrained
from data2vec.config import to_dict


def write_run(cfg, model, teacher, folder):
    """A run folder whose checkpoints/last.pt has the entries `load_model` reads."""
    path = folder / "checkpoints" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": TRAIN_FORMAT, "config": to_dict(cfg), "model": model.state_dict(),
                "teacher": {"module": teacher.state_dict(), "decay": 0.999}, "optimizer": {}}, path)
    return path


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_every_format_is_detected_and_loads_the_same_weights(write_fairseq, tmp_path):
    path, cfg, model, teacher = write_fairseq("image")
    last = write_run(cfg, model, teacher, tmp_path / "run")
    save_pretrained(model, cfg, tmp_path / "ours", teacher=teacher)
    cases = {path: "fairseq", tmp_path / "run": "run", last: "run", tmp_path / "ours": "ours"}
    full_teacher = {**model.state_dict(), **teacher.state_dict()}
    for where, fmt in cases.items():
        assert detect_format(where) == fmt
        loaded, got_cfg, head = load_model(where)
        assert head is None and got_cfg.model == cfg.model and not loaded.training
        _same(loaded.state_dict(), model.state_dict())
        _same(load_model(where, "teacher", source=fmt).model.state_dict(), full_teacher)


def test_a_model_without_teacher_refuses_teacher_weights(tiny_model, tmp_path):
    cfg, model, _ = tiny_model("text")
    save_pretrained(model, cfg, tmp_path)
    with pytest.raises(ValueError, match="has no EMA teacher"):
        load_model(tmp_path, "teacher")
    with pytest.raises(ValueError, match="weights must be one of"):
        load_model(tmp_path, "ema")


def test_wrong_inputs_are_one_line_errors_naming_the_file(write_fairseq, tmp_path):
    path, cfg, model, teacher = write_fairseq("text")
    last = write_run(cfg, model, teacher, tmp_path / "run")
    with pytest.raises(ValueError, match=r"last.pt: a data2vec training checkpoint, not a fairseq"):
        read_checkpoint(last, "fairseq")
    with pytest.raises(ValueError, match=r"text.pt: not a data2vec training checkpoint"):
        read_checkpoint(path, "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: not a checkpoint folder"):
        load_model(tmp_path / "empty")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk.pt: not a readable torch checkpoint"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="unknown checkpoint format 'onnx'"):
        load_model(path, source="onnx")
    for err in (ValueError, FileNotFoundError):
        try:
            load_model(tmp_path / "empty" if err is FileNotFoundError else tmp_path / "junk.pt")
        except err as e:
            assert "\n" not in str(e)


def test_a_run_stopped_by_its_time_limit_exports_itself_and_every_form_loads_alike(fmnist_train, tmp_path):
    from data2vec.cli import main
    from data2vec.config import apply_overrides
    from data2vec.presets import get_preset
    from data2vec.train.pretrain import pretrain

    cfg = apply_overrides(get_preset("data2vec2_image_tiny"), [f"data.path={fmnist_train}", "data.limit=300",
                                                              "train.max_steps=50", "train.log_every=1",
                                                              "train.time_limit_min=1e-6"])
    summary = pretrain(cfg, tmp_path / "run", progress=False)
    export = tmp_path / "run" / "export"
    assert summary["steps"] == 1 and summary["export"] == str(export) and detect_format(export) == "ours"
    assert not any(p.suffix == ".pt" or p.suffix == ".bin" for p in export.iterdir())
    for weights in ("student", "teacher"):
        a = load_model(tmp_path / "run", weights).model.state_dict()
        _same(a, load_model(export, weights).model.state_dict())
        _same(a, load_model(tmp_path / "run" / "checkpoints" / "last.pt", weights).model.state_dict())
    assert main(["convert", str(tmp_path / "run"), "--to", "fairseq", str(tmp_path / "meta.pt")]) == 0
    _same(load_model(tmp_path / "meta.pt").model.state_dict(), load_model(export).model.state_dict())
