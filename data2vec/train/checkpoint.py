"""Atomic training checkpoints, loaded without full unpickling."""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("data2vec")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder); the previous one is intact."""


def previous_path(path: str | Path) -> Path:
    """Where `save_atomic` keeps the checkpoint it replaces: last.pt -> last.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def fsync_dir(folder: str | Path) -> None:
    """Make renames in `folder` durable (a crash after the rename cannot undo it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_previous(path: Path) -> None:
    """Atomically make previous_path(path) a copy of `path` (a hard link where possible)."""
    prev, tmp = previous_path(path), previous_path(path).with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # no hard links on this file system
        shutil.copyfile(path, tmp)
    os.replace(tmp, prev)


def save_atomic(obj: Any, path: str | Path, keep_previous: bool = True) -> None:
    """torch.save to a temporary file in the same folder, fsync it, then rename it over `path`
    and fsync the folder.

    A crash at any moment leaves a complete checkpoint at `path` (the old or the new one); with
    `keep_previous` the replaced one stays as `previous_path(path)` until the next save, a
    fallback should `path` ever be unreadable. A failed write (disk full, read-only folder)
    raises CheckpointWriteError and leaves the previous checkpoint untouched.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{path.name}.*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.is_file():
            _keep_previous(path)
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as e:
        intact = f"the previous checkpoint {path} is intact" if path.is_file() else "no checkpoint was written before"
        reason = getattr(e, "strerror", None) or _first_line(e)
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {reason}; {intact}") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _first_line(e: BaseException) -> str:
    """An exception's message cut to one line (torch's can run over many)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load one of our checkpoints with `weights_only=True` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ValueError(f"cannot read checkpoint {path}: {type(e).__name__}: {_first_line(e)}") from e


TRAIN_FORMAT = "data2vec-train-checkpoint"
FINETUNE_RUN_FORMAT = "data2vec-finetune-run"
# What a run needs to resume, per checkpoint format.
RESUME_KEYS = {TRAIN_FORMAT: ("config", "model", "teacher", "optimizer", "state", "rng"),
               FINETUNE_RUN_FORMAT: ("config", "model", "optimizer", "state", "rng")}


def load_train_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                          fmt: str = TRAIN_FORMAT) -> tuple[dict, Path]:
    """A pretraining (or, with `fmt`, fine-tuning) checkpoint to resume from: `path`, or with a
    warning the previous one kept by `save_atomic` when `path` is missing, truncated or foreign.

    Returns (checkpoint, the path it came from). Raises naming `path` when neither is usable.
    """
    path = Path(path)
    try:
        return _checked(load_checkpoint(path, map_location), path, fmt), path
    except (FileNotFoundError, ValueError) as e:
        prev = previous_path(path)
        if not prev.is_file():
            raise
        try:
            ckpt = _checked(load_checkpoint(prev, map_location), prev, fmt)
        except ValueError:
            raise e from None
        log.warning("%s; resuming from the previous checkpoint %s (step %s)", e, prev, ckpt["state"]["step"])
        return ckpt, prev


def _checked(ckpt: Any, path: Path, fmt: str) -> dict:
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        kind = "fine-tuning" if fmt == FINETUNE_RUN_FORMAT else "training"
        raise ValueError(f"{path} is not a data2vec {kind} checkpoint")
    missing = [k for k in RESUME_KEYS[fmt] if k not in ckpt]
    if missing:
        raise ValueError(f"{path} is not a complete training checkpoint: no {', '.join(missing)}")
    return ckpt


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_version": random.getstate()[0]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
