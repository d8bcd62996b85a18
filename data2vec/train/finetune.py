"""The one fine-tuning loop, for every task: a task supplies batches, the loss, evaluation and
the head; the loop owns everything else.

Visible, in order, per update: lr (with layer-wise scales) -> backbone frozen or not ->
seeded RNG -> for each micro-batch: autocast forward + loss, backward -> clip + step (shared
with pretraining, `train.step`) -> log -> evaluation (best weights kept) -> atomic checkpoint.

A run folder holds `config.json`, `metrics.jsonl`, `tensorboard/`, `checkpoints/last.pt`
(exact `resume`), `checkpoints/best.pt`, and at the end `finetuned.pt` (the selected weights)
and `results.json`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from data2vec import __version__
from data2vec.config import PretrainConfig, from_dict, save_config, to_dict
from data2vec.heads.ctc import blank_plateau_hint
from data2vec.heads.finetuned import HeadConfig
from data2vec.heads.model import EncoderWithHead
from data2vec.train import distributed
from data2vec.train.checkpoint import (
    FINETUNE_RUN_FORMAT, load_checkpoint, load_train_checkpoint, rng_state, save_atomic, set_rng_state,
)
from data2vec.train.compilation import choose_compile, compile_blocks
from data2vec.train.finetune_config import LOWER_IS_BETTER, SCHEDULES, FinetuneConfig, FinetuneTrainConfig
from data2vec.train.logging import MetricLogger, truncate_metrics
from data2vec.train.optim import modality_exempt, no_weight_decay
from data2vec.train.pretrain import LAST, prepare_run_dir, resolve_device
from data2vec.train.schedules import cosine_with_warmup, linear_warmup_decay, tri_stage
from data2vec.train.precision import autocast, choose_bf16
from data2vec.train.step import backward, clip_and_step, set_lr

log = logging.getLogger("data2vec")
BEST = "checkpoints/best.pt"
FORMAT = "data2vec-finetune-checkpoint"


class FinetuneTask(Protocol):
    """What a task supplies to the loop (see `train.finetune_image` for a complete one)."""

    head: HeadConfig  # the head to put on the backbone
    outputs: list[str]  # class names or CTC symbols, saved with the model
    metric: str  # default validation metric for model selection
    has_test: bool  # whether evaluate(model, "test") has data: the selected weights are scored on it

    def sizes(self) -> dict[str, int]:
        """Examples per split ("train", "valid", "test"), for the results."""

    def num_batches(self) -> int:
        """Training micro-batches per epoch."""

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        """Training micro-batches of `epoch` from index `start`, the same for the same arguments."""

    def loss(self, model: EncoderWithHead, batch: dict[str, Any], generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss and detached logs for one micro-batch (model in train mode)."""

    def evaluate(self, model: EncoderWithHead, split: str) -> dict[str, float]:
        """Metrics on "valid" or "test" (model in eval mode)."""


def warmup_steps(tc: FinetuneTrainConfig, total: int) -> int:
    """Updates of the lr warm-up in a run of `total` updates."""
    return int(tc.warmup_frac * total)


def finetune_lr(step: int, tc: FinetuneTrainConfig, total: int) -> float:
    """The base lr at `step` of `total` updates for `tc.schedule`."""
    warmup = warmup_steps(tc, total)
    if tc.schedule == "cosine":
        return cosine_with_warmup(step, tc.lr, warmup, total, tc.min_lr)
    if tc.schedule == "linear":
        return linear_warmup_decay(step, tc.lr, max(1, warmup), total)
    if tc.schedule == "tri_stage":
        if tc.min_lr <= 0:
            raise ValueError("train.schedule=tri_stage decays exponentially to train.min_lr, which must be > 0")
        return tri_stage(step, tc.lr, warmup, int(tc.hold_frac * total), total, tc.min_lr)
    raise ValueError(f"train.schedule={tc.schedule!r}; expected one of {SCHEDULES}")


_BLOCK = re.compile(r"^(modality\.context_encoder|encoder)\.blocks\.(\d+)\.")


def block_index(name: str, prenet_depth: int) -> Optional[int]:
    """1-based index of the Transformer block (prenet blocks first) holding parameter `name`,
    or None for the patch embedding, extra tokens, norms outside blocks and the head."""
    m = _BLOCK.match(name)
    if m is None:
        return None
    return int(m.group(2)) + 1 + (prenet_depth if m.group(1) == "encoder" else 0)


def finetune_param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups: no weight decay for biases and norms; block i of N gets
    `lr_scale = layer_decay^(N + 1 - i)` (fairseq `no_decay_blocks`: everything else keeps 1)."""
    prenet = len(getattr(getattr(model.modality, "context_encoder", None), "blocks", ()))
    n = prenet + len(model.encoder.blocks)
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    exempt = modality_exempt(model)
    for name, p in model.named_parameters():
        i = block_index(name, prenet)
        scale = layer_decay ** (n + 1 - i) if i is not None and layer_decay != 1.0 else 1.0
        groups.setdefault((no_weight_decay(name, p, exempt), scale), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if nd else weight_decay, "lr_scale": s} for (nd, s), ps in groups.items()]


def quarter_means(losses: list[float]) -> tuple[float, float]:
    """Means of the first and the last quarter of `losses` (one quarter holds at least one)."""
    q = max(1, len(losses) // 4)
    return sum(losses[:q]) / q, sum(losses[-q:]) / q


def loss_stalled(losses: list[float], tolerance: float = 0.01) -> bool:
    """True when the mean of the last quarter of `losses` is within `tolerance` (relative) of
    the first quarter's, or higher: those updates taught the model nothing."""
    first, last = quarter_means(losses)
    return last >= first * (1 - tolerance)


def stall_check_step(steps_per_epoch: int, tc: FinetuneTrainConfig, total: int) -> int:
    """The update after which a flat training loss is worth a warning: the end of the first
    epoch or of the lr warm-up, whichever is later. On a small labelled set one epoch is a
    handful of updates at a fraction of the peak lr, where noisy per-batch losses of runs that
    go on to learn often do not fall yet."""
    return min(total, max(steps_per_epoch, warmup_steps(tc, total)))


@dataclass
class FinetuneState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


class Finetuner:
    """One fine-tuning run of `model` on `task` into `run_dir`; `train()` runs the loop."""

    def __init__(self, cfg: FinetuneConfig, pretrain_cfg: PretrainConfig, model: EncoderWithHead, task: FinetuneTask,
                 run_dir: str | Path, resume: bool = False, force: bool = False) -> None:
        self.cfg, self.pretrain_cfg, self.model, self.task = cfg, pretrain_cfg, model, task
        self.run_dir = Path(run_dir)
        self.dist = distributed.env()
        if self.dist.is_main:  # under torchrun rank 0 owns the run folder; the others read it
            prepare_run_dir(self.run_dir, resume, force)
        distributed.barrier()
        tc = cfg.train
        if tc.grad_accum % self.dist.world_size:
            raise ValueError(f"train.grad_accum={tc.grad_accum} (micro-batches per update over all ranks) is not a "
                             f"multiple of the {self.dist.world_size} ranks")
        per_epoch = task.num_batches() // tc.grad_accum
        if per_epoch < 1:
            raise ValueError(f"{task.num_batches()} training batches per epoch for train.grad_accum={tc.grad_accum}; "
                             "need at least one update per epoch (lower train.batch_size or train.grad_accum)")
        self.steps_per_epoch = per_epoch
        self.total = tc.max_steps or tc.epochs * per_epoch
        self.eval_every = tc.eval_every or per_epoch
        self.stall_check = stall_check_step(per_epoch, tc, self.total)
        self.ckpt_every = tc.ckpt_every or self.eval_every
        self.metric = tc.select_metric or task.metric
        self.device = resolve_device(tc.device)
        self.bf16 = choose_bf16(tc.bf16, self.device)
        self.model.to(self.device)
        if choose_compile(tc.compile, self.device, self.bf16):
            compile_blocks(self.model)
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(finetune_param_groups(model, tc.weight_decay, tc.layer_decay),
                                           lr=tc.lr, betas=tc.betas, eps=tc.eps)
        self.state, self.best, self.history, self.window = FinetuneState(), None, [], []
        if resume:
            self._restore(load_train_checkpoint(self.run_dir / LAST, fmt=FINETUNE_RUN_FORMAT)[0])
        self.metrics: Optional[MetricLogger] = None
        if self.dist.is_main:
            save_config(cfg, str(self.run_dir / "config.json"))
            self.metrics = MetricLogger(self.run_dir)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> dict[str, Any]:
        s = self.state
        return {"format": FINETUNE_RUN_FORMAT, "version": __version__, "config": to_dict(self.cfg),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "state": {"step": s.step, "epoch": s.epoch, "batch_in_epoch": s.batch_in_epoch},
                "best": self.best, "history": self.history, "window": self.window, "rng": rng_state()}

    def _restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("config") != to_dict(self.cfg):
            raise ValueError(f"--resume: the fine-tuning config differs from the one saved in {self.run_dir / LAST}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state = FinetuneState(**ckpt["state"])
        self.best, self.history, self.window = ckpt["best"], list(ckpt["history"]), list(ckpt["window"])
        set_rng_state(ckpt["rng"])
        truncate_metrics(self.run_dir / "metrics.jsonl", self.state.step)
        log.info("resumed %s at update %d", self.run_dir, self.state.step)

    def export(self) -> dict[str, Any]:
        """The fine-tuned model as a self-contained checkpoint (`load_finetuned` reads it)."""
        return {"format": FORMAT, "version": __version__, "config": to_dict(self.cfg),
                "pretrain_config": to_dict(self.pretrain_cfg), "head": to_dict(self.task.head),
                "outputs": list(self.task.outputs), "model": self.model.state_dict()}

    # ------------------------------------------------------------------ the loop
    def _batches(self) -> Iterator[dict[str, Any]]:
        s = self.state
        while True:
            for batch in self.task.batches(s.epoch, s.batch_in_epoch):
                s.batch_in_epoch += 1
                yield batch
            s.epoch += 1
            s.batch_in_epoch = 0

    def _set_backbone_frozen(self, frozen: bool) -> None:
        for name, p in self.model.named_parameters():
            if not name.startswith("head."):
                p.requires_grad_(not frozen and name in self.trainable)

    def train_step(self, batches: Iterator[dict[str, Any]]) -> dict[str, float]:
        """One update over `train.grad_accum` micro-batches; under torchrun rank r of W takes
        every W-th of them and the gradients are averaged over ranks before the step."""
        tc, s, W, rank = self.cfg.train, self.state, self.dist.world_size, self.dist.rank
        lr = finetune_lr(s.step, tc, self.total)
        set_lr(self.optimizer, lr)
        self._set_backbone_frozen(s.step < tc.freeze_backbone_steps)
        self.model.train()
        accum = tc.grad_accum // W
        sums: dict[str, float] = {}
        for micro in range(tc.grad_accum):
            batch = next(batches)  # every rank walks the same stream, so positions agree
            if micro % W != rank:
                continue
            seed = (tc.seed * 1_000_003 + s.step) * 64 + micro
            # Dropout, drop path, augmentation and mixup draw from the global RNG: seeding it per
            # micro-batch makes a resumed run, and any world size, draw what one process would.
            torch.manual_seed(seed)
            with autocast(self.bf16, self.device):
                loss, logs = self.task.loss(self.model, batch, torch.Generator().manual_seed(seed))
            if loss is None:  # nothing readable in this micro-batch (counted by the task)
                continue
            backward(loss, accum)
            for k, v in {"loss": loss.item(), **logs}.items():
                sums[k] = sums.get(k, 0.0) + v / accum
        if self.dist.distributed:
            distributed.all_reduce_gradients(self.model.parameters())
            sums = distributed.reduce_mean(sums, self.device)
        grad_norm = clip_and_step(self.model.parameters(), self.optimizer, tc.clip_norm, s.step)
        s.step += 1
        return {**sums, "lr": lr, "grad_norm": grad_norm}

    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics on `split`; under torchrun rank 0 evaluates and tells the others."""
        result = None
        if self.dist.is_main:
            self.model.eval()
            with torch.no_grad(), autocast(self.bf16, self.device):
                result = self.task.evaluate(self.model, split)
        return distributed.broadcast_object(result)

    def _offer_best(self, row: dict[str, Any]) -> None:
        key = f"valid_{self.metric}"
        if key not in row:
            found = sorted(k[len("valid_"):] for k in row if k.startswith("valid_"))
            raise ValueError(f"train.select_metric={self.metric!r} is not computed for this task; choose from {found}")
        sign = -1 if self.metric in LOWER_IS_BETTER else 1
        if self.best is None or sign * row[key] > sign * self.best[key]:
            self.best = row
            if self.dist.is_main:
                save_atomic({"step": row["step"], "model": self.model.state_dict()}, self.run_dir / BEST)
            distributed.barrier()

    def train(self, progress: bool = True) -> dict[str, Any]:
        """Run to `self.total` updates; returns the results (also written to results.json)."""
        tc, s = self.cfg.train, self.state
        log.info("resolved fine-tuning config:\n%s", json.dumps(to_dict(self.cfg), indent=2))
        batches, t0, window = self._batches(), time.perf_counter(), self.window
        bar = tqdm(total=self.total, initial=s.step, disable=not (progress and self.dist.is_main),
                   dynamic_ncols=True, desc="finetune")
        try:
            while s.step < self.total:
                logs = self.train_step(batches)
                window.append(logs.get("loss", float("nan")))
                del window[:-max(self.eval_every, self.stall_check)]
                bar.update(1)
                if s.step == self.stall_check and loss_stalled(window):
                    log.warning("the training loss did not move in the first %d updates (the first epoch and the lr "
                                "warm-up; mean of the first quarter %.4f, of the last %.4f): try a higher train.lr or "
                                "more train.epochs", s.step, *quarter_means(window))
                if s.step % self.eval_every == 0 or s.step == self.total:
                    row = {"step": s.step, "epoch": s.step / self.steps_per_epoch,
                           "train_loss": sum(window[-self.eval_every:]) / len(window[-self.eval_every:]),
                           **{f"valid_{k}": v for k, v in self.evaluate("valid").items()}}
                    self.history.append(row)
                    self._offer_best(row)
                    self._warn_blank_plateau()
                    logs.update({k: v for k, v in row.items() if k.startswith("valid_")})
                    log.info("update %d: %s", s.step, {k: round(v, 4) for k, v in row.items()})
                if self.metrics is not None and (s.step % tc.log_every == 0 or "valid_" + self.metric in logs):
                    self.metrics.log(s.step, logs)
                    bar.set_postfix(loss=f"{window[-1]:.4f}", lr=f"{logs['lr']:.2e}")
                if s.step % self.ckpt_every == 0 or s.step == self.total:
                    if self.dist.is_main:
                        save_atomic(self._checkpoint(), self.run_dir / LAST)
                    distributed.barrier()
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()
        return self._finish(time.perf_counter() - t0)

    def _warn_blank_plateau(self) -> None:
        # Read from the history, not kept by the task, so a resumed run counts the evaluations
        # before the restart too; only CTC tasks report `length`. Evaluations inside the lr
        # warm-up do not count: with ctc_small's 160 warm-up updates a healthy run (test CER
        # 49.3%, like its other seeds) still emitted 0 / 16 / 23% of the characters at updates
        # 100 / 200 / 300 and 49% at 400.
        warmup = warmup_steps(self.cfg.train, self.total)
        lengths = [row["valid_length"] for row in self.history if "valid_length" in row and row["step"] > warmup]
        hint = blank_plateau_hint(lengths) if lengths else None
        if hint:
            log.warning("%s", hint)

    def _finish(self, seconds: float) -> dict[str, Any]:
        """Keep the best evaluation's weights, test them, write finetuned.pt and results.json."""
        if self.best is not None and self.best["step"] != self.state.step:
            self.model.load_state_dict(load_checkpoint(self.run_dir / BEST)["model"])
        if self.dist.is_main:
            save_atomic(self.export(), self.run_dir / "finetuned.pt")
        results: dict[str, Any] = {
            "task": self.cfg.task, "init": self.cfg.init or f"random ({self.cfg.preset})", "metric": self.metric,
            "updates": self.state.step, "updates_per_epoch": self.steps_per_epoch, "seconds_this_run": seconds,
            "examples": self.task.sizes(),
            "best_step": self.best["step"] if self.best else self.state.step,
            "valid": {k[len("valid_"):]: v for k, v in (self.best or {}).items() if k.startswith("valid_")},
            "history": self.history, "checkpoint": str(self.run_dir / "finetuned.pt"),
        }
        if self.task.has_test:
            results["test"] = self.evaluate("test")
        if self.dist.is_main:
            (self.run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


def read_finetuned(path: str | Path) -> dict[str, Any]:
    """The contents of a `finetuned.pt`, checked to be one."""
    ckpt = load_checkpoint(path)
    if ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a data2vec fine-tuned model (data2vec finetune writes finetuned.pt)")
    return ckpt


def finetune_config_of(ckpt: dict[str, Any]) -> tuple[FinetuneConfig, PretrainConfig, HeadConfig]:
    """(fine-tuning config, pretraining config, head config) saved in a `finetuned.pt`."""
    from data2vec.recipes import list_recipes

    list_recipes()  # registers every task's data kind
    return (from_dict(FinetuneConfig, ckpt["config"]), from_dict(PretrainConfig, ckpt["pretrain_config"]),
            HeadConfig(**ckpt["head"]))
