"""A generic fine-tuning loop: model = backbone + head, a task supplies batches, the loss and
evaluation. Speech CTC and utterance classification use it; text classification can too.

Visible, in order, per step: lr (tri-stage) -> warm-up freeze of the backbone -> forward/loss
-> backward -> clip -> step -> log -> periodic evaluation. The last checkpoint is saved atomically.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

import torch
from torch import Tensor, nn

from data2vec.train.checkpoint import save_atomic
from data2vec.train.optim import param_groups
from data2vec.train.schedules import linear_warmup_decay, tri_stage

log = logging.getLogger("data2vec")


@dataclass(frozen=True)
class FinetuneConfig:
    """Optimization of a fine-tuning run (fairseq wav2vec_ctc recipe defaults)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.0
    max_steps: int = 20_000
    schedule: str = "tri_stage"  # or "linear": warm-up then linear decay to 0 (fairseq GLUE)
    warmup_frac: float = 0.1  # tri-stage: 10% warm-up, 40% hold, 50% exponential decay
    hold_frac: float = 0.4
    final_lr_scale: float = 0.05
    freeze_backbone_steps: int = 10_000  # only the head trains for these first updates
    clip_norm: float = 0.0  # 0 disables
    eval_every: int = 1000
    select_metric: str = ""  # keep the weights of the evaluation best in this metric ("": the last)
    log_every: int = 50
    seed: int = 1
    device: str = "auto"


def tri_stage_lr(step: int, base_lr: float, total: int, warmup_frac: float, hold_frac: float,
                 final_scale: float) -> float:
    """fairseq `tri_stage` with phases given as fractions of `total` and a final lr scale."""
    return tri_stage(step, base_lr, int(total * warmup_frac), int(total * hold_frac), total, base_lr * final_scale)


def finetune_lr(step: int, cfg: FinetuneConfig) -> float:
    """The lr at `step` for `cfg.schedule`."""
    if cfg.schedule == "tri_stage":
        return tri_stage_lr(step, cfg.lr, cfg.max_steps, cfg.warmup_frac, cfg.hold_frac, cfg.final_lr_scale)
    if cfg.schedule == "linear":
        return linear_warmup_decay(step, cfg.lr, max(1, int(cfg.warmup_frac * cfg.max_steps)), cfg.max_steps)
    raise ValueError(f"schedule={cfg.schedule!r}; expected 'tri_stage' or 'linear'")


class FinetuneModel(nn.Module):
    """A pretrained backbone and a task head; the task decides how they are called."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head


class FinetuneTask(Protocol):
    """What a task supplies to `finetune`."""

    def batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        """Training batches of one epoch (deterministic given the epoch)."""

    def loss(self, model: FinetuneModel, batch: dict[str, Any], generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss and detached logs for one batch (model in train mode)."""

    def evaluate(self, model: FinetuneModel) -> dict[str, float]:
        """Held-out metrics (model in eval mode)."""


def _endless(task: FinetuneTask) -> Iterator[dict[str, Any]]:
    epoch = 0
    while True:
        empty = True
        for batch in task.batches(epoch):
            empty = False
            yield batch
        if empty:
            raise ValueError("the fine-tuning task produced no training batches")
        epoch += 1


def _set_backbone_frozen(model: nn.Module, frozen: bool, trainable: set[str]) -> None:
    """Freeze everything but the task head (`head.*`), or give back requires_grad to the
    parameters that had it."""
    for name, p in model.named_parameters():
        if not name.startswith("head."):
            p.requires_grad_(not frozen and name in trainable)


def finetune(
    model: nn.Module,
    task: FinetuneTask,
    cfg: FinetuneConfig,
    run_dir: str | Path,
    save_extra: Optional[Callable[[], dict[str, Any]]] = None,
) -> dict[str, Any]:
    """Fine-tune `model` (task head under `head.*`) on `task`; returns a summary with the
    evaluation history (each row: step, lr, train_loss since the last evaluation, valid_*).

    Parameters with requires_grad=False on entry (e.g. a frozen feature extractor) stay
    frozen. With `cfg.select_metric` the weights of the best evaluation are kept. `save_extra()`
    adds entries (config, vocabulary) to `run_dir/finetuned.pt`.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    batches, history, best, t0 = _endless(task), [], _Best(cfg.select_metric), time.perf_counter()
    window: list[float] = []
    with open(run_dir / "metrics.jsonl", "w") as metrics:
        for step in range(cfg.max_steps):
            lr = finetune_lr(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            _set_backbone_frozen(model, step < cfg.freeze_backbone_steps, trainable)
            model.train()
            loss, logs = task.loss(model, next(batches), torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm if cfg.clip_norm > 0 else math.inf)
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(f"fine-tuning step {step}: gradient norm {grad_norm.item()}; lower train.lr")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            window.append(loss.item())
            row = {"step": step + 1, "lr": lr, "loss": loss.item(), **logs}
            evaluate = (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps
            if evaluate:
                model.eval()
                row.update(train_loss=sum(window) / len(window), **{f"valid_{k}": v for k, v in task.evaluate(model).items()})
                window = []
                history.append(row)
                best.offer(row, model)
                log.info("fine-tune step %d: %s", step + 1, {k: round(v, 4) for k, v in row.items()})
            if (step + 1) % cfg.log_every == 0 or evaluate:
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
    _set_backbone_frozen(model, False, trainable)
    best.restore(model)
    ckpt = {"format": "data2vec-finetune-checkpoint", "model": model.state_dict(), **(save_extra() if save_extra else {})}
    save_atomic(ckpt, run_dir / "finetuned.pt")
    return {"steps": cfg.max_steps, "seconds": time.perf_counter() - t0, "history": history,
            "best_step": best.row["step"] if best.row else cfg.max_steps, "checkpoint": str(run_dir / "finetuned.pt")}


class _Best:
    """The evaluation with the highest `valid_<metric>` and a copy of its weights."""

    def __init__(self, metric: str) -> None:
        self.key = f"valid_{metric}" if metric else ""
        self.row: Optional[dict[str, Any]] = None
        self.state: Optional[dict[str, Tensor]] = None

    def offer(self, row: dict[str, Any], model: nn.Module) -> None:
        if not self.key:
            return
        if self.key not in row:
            found = sorted(k[len("valid_"):] for k in row if k.startswith("valid_"))
            raise ValueError(f"select_metric={self.key[len('valid_'):]!r} is not computed; choose from {found}")
        if self.row is None or row[self.key] > self.row[self.key]:
            self.row = row
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)
