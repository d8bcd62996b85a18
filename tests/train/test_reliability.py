"""Crash safety: atomic checkpoints with a kept previous one, fallback from a corrupt last.pt,
disk full / read-only folders, and a stop on non-finite values that never saves after them."""

import errno
import logging
import os

import pytest
import torch

from data2vec.cli import main as cli_main
from data2vec.config import apply_overrides
from data2vec.presets import get_preset
from data2vec.train import checkpoint as ckpt_mod
from data2vec.train.checkpoint import (
    CheckpointWriteError, load_checkpoint, load_train_checkpoint, previous_path, save_atomic,
)
from data2vec.train.pretrain import LAST, Trainer, pretrain


def _cfg(path, *extra):
    return apply_overrides(get_preset("data2vec2_image_tiny"), [f"data.path={path}", "data.limit=256", *extra])


def test_save_keeps_the_previous_checkpoint_and_syncs_the_folder(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    synced = []
    monkeypatch.setattr(ckpt_mod, "fsync_dir", lambda d: synced.append((d, load_checkpoint(path)["v"])))
    save_atomic({"v": 1}, path)
    (tmp_path / "last.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # a write killed midway
    save_atomic({"v": 2}, path)
    assert load_checkpoint(path)["v"] == 2 and load_checkpoint(previous_path(path))["v"] == 1
    assert synced == [(tmp_path, 1), (tmp_path, 2)]  # after each rename
    assert {p.name for p in tmp_path.iterdir()} == {"last.pt", "last.prev.pt"}


def _dev_full(*args, **kwargs):
    """mkstemp that hands out /dev/full: every write fails with ENOSPC, as on a full disk."""
    return os.open("/dev/full", os.O_WRONLY), "/nonexistent/last.pt.x.tmp"


def test_disk_full_and_read_only_are_clear_errors_and_keep_the_last_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"v": torch.ones(3)}, path)
    monkeypatch.setattr(ckpt_mod.tempfile, "mkstemp", _dev_full)
    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint .*last.pt: No space left on device; "
                                                   r"the previous checkpoint .*last.pt is intact"):
        save_atomic({"v": torch.zeros(100_000)}, path)
    assert torch.equal(load_checkpoint(path)["v"], torch.ones(3))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(ckpt_mod.tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointWriteError, match="Read-only file system; the previous checkpoint"):
        save_atomic({"v": torch.zeros(3)}, path)
    assert torch.equal(load_checkpoint(path)["v"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_run_on_a_full_disk_stops_with_one_line_and_its_last_checkpoint(fmnist_train, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    args = ["pretrain", "--preset", "data2vec2_image_tiny", "--out", str(run), "--no-progress",
            f"data.path={fmnist_train}", "data.limit=256", "train.max_steps=4", "train.ckpt_every=2"]
    assert cli_main(args) == 0
    good = load_checkpoint(run / LAST)
    monkeypatch.setattr(ckpt_mod.tempfile, "mkstemp", _dev_full)
    assert cli_main(["pretrain", "--out", str(run), "--resume", "--no-progress", "train.max_steps=6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("data2vec pretrain: error: cannot write checkpoint") and "intact" in err[-1]
    after = load_checkpoint(run / LAST)
    assert after["state"]["step"] == 4
    assert all(torch.equal(good["model"][k], after["model"][k]) for k in good["model"])


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(fmnist_train, tmp_path, caplog):
    cfg = _cfg(fmnist_train, "train.max_steps=5", "train.ckpt_every=3", "train.log_every=1")
    pretrain(cfg, tmp_path / "full", progress=False)
    pretrain(cfg, tmp_path / "split", progress=False)
    last = tmp_path / "split" / LAST
    assert load_checkpoint(previous_path(last))["state"]["step"] == 3
    last.write_bytes(last.read_bytes()[:1000])  # a torn write the file system did not protect
    with caplog.at_level(logging.WARNING, logger="data2vec"):
        ckpt, used = load_train_checkpoint(last)
    assert used == previous_path(last) and ckpt["state"]["step"] == 3
    assert "resuming from the previous checkpoint" in caplog.text and "cannot read checkpoint" in caplog.text
    pretrain(cfg, tmp_path / "split", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "full" / LAST), load_checkpoint(last)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_foreign_or_missing_checkpoints_are_errors_naming_the_file(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(ValueError, match="last.pt is not a data2vec training checkpoint"):
        load_train_checkpoint(path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="last.pt does not exist"):
        load_train_checkpoint(path)


def test_non_finite_loss_stops_the_run_naming_the_step_and_the_last_good_checkpoint(fmnist_train, tmp_path):
    cfg = _cfg(fmnist_train, "train.max_steps=12", "train.ckpt_every=3", "train.log_every=5")
    trainer = Trainer(cfg, tmp_path / "run")
    forward = trainer.student

    def poisoned(batch, teacher, gen, step):
        out = forward(batch, teacher, gen, step)
        if step == 7:
            out.loss = out.loss * float("nan")
        return out

    trainer.student = poisoned
    with pytest.raises(FloatingPointError, match=r"step 7: the loss or gradient norm is not finite; stopped without "
                                                 r"saving; the last good checkpoint is .*last.pt \(step 6\)"):
        trainer.train(progress=False)
    # The step-9 checkpoint was refused: last.pt still holds step 6 and only finite weights.
    saved = load_checkpoint(tmp_path / "run" / LAST)
    assert saved["state"]["step"] == 6
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_a_torn_fine_tuning_checkpoint_falls_back_to_the_previous_one(tmp_path):
    from data2vec.train.checkpoint import FINETUNE_RUN_FORMAT

    path = tmp_path / "last.pt"
    for step in (2, 4):
        save_atomic({"format": FINETUNE_RUN_FORMAT, "config": {}, "model": {}, "optimizer": {}, "state": {"step": step},
                     "rng": {}}, path)
    path.write_bytes(b"")
    ckpt, used = load_train_checkpoint(path, fmt=FINETUNE_RUN_FORMAT)
    assert used == previous_path(path) and ckpt["state"]["step"] == 2
    with pytest.raises(ValueError, match="is not a data2vec training checkpoint"):
        load_train_checkpoint(previous_path(path))
