"""The pretraining loop: forward, loss, backward, clip, step, then a visible teacher update."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from tqdm import tqdm

from data2vec import __version__
from data2vec.algorithms.data2vec1 import Data2Vec1Model
from data2vec.algorithms.data2vec2 import Data2Vec2Model
from data2vec.config import ModelConfig, PretrainConfig, from_dict, save_config, to_dict
from data2vec.train.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from data2vec.train.data import PretrainData, SkipCounter, build_pretrain_data
from data2vec.train.logging import MetricLogger, truncate_metrics
from data2vec.train.optim import build_optimizer
from data2vec.train.precision import autocast, choose_bf16
from data2vec.train.schedules import learning_rate

log = logging.getLogger("data2vec")
LAST = "checkpoints/last.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


MODELS = {1: Data2Vec1Model, 2: Data2Vec2Model}


def build_model(cfg: ModelConfig) -> torch.nn.Module:
    """The model for `cfg.version`: 1 = data2vec 1.0, 2 = data2vec 2.0."""
    if cfg.version not in MODELS:
        raise ValueError(f"model.version={cfg.version} is not supported; expected one of {sorted(MODELS)}")
    return MODELS[cfg.version](cfg)


@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    skipped: int = 0


def prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite a non-empty run directory unless resuming or forced."""
    if resume:
        if not (run_dir / LAST).exists():
            raise FileNotFoundError(f"--resume: {run_dir / LAST} does not exist")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            raise FileExistsError(f"run directory {run_dir} is not empty; use --resume to continue it or --force to overwrite")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def mask_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """Masks depend only on (seed, step, micro-batch), so resumed runs draw the same masks."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + micro)


def _batch_stream(data: PretrainData, state: RunState) -> Iterator[dict[str, Any]]:
    """Endless batches from the run position, advancing `state.epoch/batch_in_epoch`."""
    while True:
        for batch in data.batches(state.epoch, state.batch_in_epoch):
            state.batch_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batch_in_epoch = 0


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """Holds model, teacher, optimizer and data for one run; `train()` runs the loop."""

    def __init__(self, cfg: PretrainConfig, run_dir: str | Path, resume: bool = False, force: bool = False,
                 init: Optional[str | Path] = None) -> None:
        self.run_dir = Path(run_dir)
        prepare_run_dir(self.run_dir, resume, force)
        ckpt = load_checkpoint(self.run_dir / LAST) if resume else None
        if ckpt is not None:
            saved = from_dict(PretrainConfig, ckpt["config"])
            if cfg.model != saved.model:
                raise ValueError(f"--resume: the model config differs from the one saved in {self.run_dir / LAST}")
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.bf16 = choose_bf16(cfg.train.bf16, self.device)
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg.model)
        teacher_state = self._load_init(init) if init and ckpt is None else None
        self.model.to(self.device)
        self.teacher = self.model.make_teacher().to(self.device)
        if teacher_state is not None:
            self.teacher.module.load_state_dict(teacher_state)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.data = build_pretrain_data(cfg.data, cfg.model.input, cfg.train)
        self.state = RunState()
        self.skips = SkipCounter("samples")
        if ckpt is not None:
            self._restore(ckpt)
        save_config(cfg, str(self.run_dir / "config.json"))
        self.metrics = MetricLogger(self.run_dir)

    def _load_init(self, init: str | Path) -> Optional[dict[str, Any]]:
        """Continued pretraining: student (and teacher, when the file has one) from `init`."""
        from data2vec.checkpoints.load import read_weights

        _, student, teacher = read_weights(init)
        try:
            self.model.load_state_dict(student)
        except RuntimeError as e:
            raise ValueError(f"--init {init}: weights do not fit the model config: {e}") from e
        log.info("initialised from %s (%s teacher)", init, "with its" if teacher is not None else "copying the student as")
        return teacher

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        s = self.state
        return {
            "format": "data2vec-train-checkpoint",
            "version": __version__,
            "config": to_dict(self.cfg),
            "model": self.model.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": s.step, "kind": self.cfg.train.schedule},
            "state": {"step": s.step, "epoch": s.epoch, "batch_in_epoch": s.batch_in_epoch,
                      "samples_seen": s.samples_seen, "skipped": s.skipped},
            "rng": rng_state(),
        }

    def save(self) -> Path:
        path = self.run_dir / LAST
        save_atomic(self.checkpoint(), path)
        return path

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.teacher.load_state_dict(ckpt["teacher"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state = RunState(**ckpt["state"])
        self.skips.total = self.state.skipped
        set_rng_state(ckpt["rng"])
        truncate_metrics(self.run_dir / "metrics.jsonl", self.state.step)
        log.info("resumed %s at step %d", self.run_dir, self.state.step)

    # ------------------------------------------------------------------ the loop
    def train_step(self, batches: Iterator[dict[str, Any]]) -> dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches, then the teacher update."""
        tc, s = self.cfg.train, self.state
        lr = learning_rate(s.step, tc.lr, tc.min_lr, tc.schedule, tc.warmup_steps, tc.hold_steps, tc.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        amp = autocast(self.bf16, self.device)
        sums: dict[str, float] = {}
        for micro in range(tc.grad_accum):
            batch = next(batches)
            while "num_skipped" in batch and batch["num_skipped"] and self.model.modality.input_key not in batch:
                self._count_skips(batch)  # a batch of nothing but unreadable samples
                batch = next(batches)
            self._count_skips(batch)
            batch = _to_device(batch, self.device)
            with amp:
                out = self.model.pretrain_forward(batch, self.teacher, mask_generator(tc.seed, s.step, micro), s.step)
            (out.loss / tc.grad_accum).backward()
            for k, v in out.logs.items():
                sums[k] = sums.get(k, 0.0) + v / tc.grad_accum
            s.samples_seen += int(batch[self.model.modality.input_key].shape[0])
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.clip_norm if tc.clip_norm > 0 else math.inf)
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(f"step {s.step}: gradient norm is {grad_norm.item()}; try a lower train.lr")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        decay = self.teacher.update(self.model, s.step)  # the teacher follows the student
        sums["masked_views"] *= tc.grad_accum
        sums.update(lr=lr, grad_norm=float(grad_norm), ema_decay=decay)
        return sums

    def _count_skips(self, batch: dict[str, Any]) -> None:
        n = int(batch.get("num_skipped", 0))
        if n:
            self.state.skipped += n
            self.skips.add(n, self.state.step)

    def train(self, progress: bool = True) -> dict[str, Any]:
        """Run until `train.max_steps` (or the time limit). Returns a summary."""
        tc, s = self.cfg.train, self.state
        log.info("resolved config:\n%s", json.dumps(to_dict(self.cfg), indent=2))
        batches = _batch_stream(self.data, s)
        bar = tqdm(total=tc.max_steps, initial=s.step, disable=not progress, dynamic_ncols=True, desc="pretrain")
        t0 = time.perf_counter()
        window_t, window_samples, window_views = t0, s.samples_seen, 0.0
        start_step = s.step
        try:
            while s.step < tc.max_steps:
                logs = self.train_step(batches)
                window_views += logs["masked_views"]
                bar.update(1)
                if s.step % tc.log_every == 0 or s.step == tc.max_steps:
                    now = time.perf_counter()
                    # Counted from the batches themselves: audio batches vary in size.
                    logs["samples_per_s"] = (s.samples_seen - window_samples) / (now - window_t)
                    logs["views_per_s"] = window_views / (now - window_t)
                    logs["skipped_total"] = s.skipped
                    window_t, window_samples, window_views = now, s.samples_seen, 0.0
                    self.metrics.log(s.step, logs)
                    bar.set_postfix(loss=f"{logs['loss']:.4f}", tgt_std=f"{logs['target_std']:.3f}",
                                    pred_std=f"{logs['pred_std']:.3f}", lr=f"{logs['lr']:.2e}")
                if s.step % tc.ckpt_every == 0:
                    self.save()
                if tc.time_limit_min > 0 and time.perf_counter() - t0 > tc.time_limit_min * 60:
                    log.warning("time limit of %.1f min reached at step %d", tc.time_limit_min, s.step)
                    break
        finally:
            bar.close()
            self.metrics.close()
        self.save()
        elapsed = time.perf_counter() - t0
        return {"steps": s.step, "steps_this_run": s.step - start_step, "seconds": elapsed,
                "skipped": s.skipped, "checkpoint": str(self.run_dir / LAST)}


def pretrain(cfg: PretrainConfig, run_dir: str | Path, resume: bool = False, force: bool = False,
             progress: bool = True, init: Optional[str | Path] = None) -> dict[str, Any]:
    """Pretrain with `cfg` into `run_dir` (or continue it with `resume=True`).

    `init` starts student and teacher from released or exported weights (a fairseq `.pt` or a
    `save_pretrained` folder): continued pretraining on new data.
    """
    return Trainer(cfg, run_dir, resume=resume, force=force, init=init).train(progress=progress)


def load_pretrained(path: str | Path, weights: str = "student", device: Optional[str] = None) -> torch.nn.Module:
    """Rebuild a model from one of our training checkpoints (student or EMA teacher weights)."""
    return model_from_checkpoint(load_checkpoint(path), weights, device, str(path))


def model_from_checkpoint(ckpt: dict[str, Any], weights: str = "student", device: Optional[str] = None,
                          path: str = "checkpoint") -> torch.nn.Module:
    """`load_pretrained` for a checkpoint dict already in memory."""
    cfg = from_dict(PretrainConfig, ckpt["config"])
    model = build_model(cfg.model)
    model.load_state_dict(ckpt["model"])
    if weights == "teacher":
        missing = model.load_state_dict(ckpt["teacher"]["module"], strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"{path}: teacher keys without a student counterpart: {missing.unexpected_keys[:5]}")
    elif weights != "student":
        raise ValueError(f"weights must be 'student' or 'teacher', got {weights!r}")
    model.eval()
    return model.to(device) if device else model
