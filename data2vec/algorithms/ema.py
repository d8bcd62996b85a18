"""The EMA teacher: its own object, updated by an explicit call after the optimizer step."""

from __future__ import annotations

import copy
import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from data2vec.config import TeacherConfig


def ema_decay(step: int, start: float, end: float, anneal_steps: int) -> float:
    """Linear anneal from `start` to `end` over `anneal_steps` updates, then constant."""
    if anneal_steps <= 0 or step >= anneal_steps:
        return end
    return end - (end - start) * (1.0 - step / anneal_steps)


def _full(t: torch.Tensor) -> torch.Tensor:
    """A student tensor sharded by FSDP2 (a DTensor) gathered whole: the teacher is a full copy
    on every rank, so it stays identical across ranks."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def init_share(start: float, end: float, anneal_steps: int, steps: int) -> float:
    """Weight the teacher's random initialisation still has after `steps` updates: prod_t decay_t."""
    ramp = min(max(steps, 0), max(anneal_steps, 0))
    t = np.arange(1, ramp + 1, dtype=np.float64)
    log_sum = np.log(end - (end - start) * (1.0 - t / anneal_steps)).sum() if ramp else 0.0
    return math.exp(log_sum + (max(steps, 0) - ramp) * math.log(end)) if end > 0 else 0.0


def teacher_lag_warning(cfg: TeacherConfig, max_steps: int, limit: float = 0.01) -> Optional[str]:
    """A message when the EMA schedule leaves the teacher mostly its random initialisation.

    With decays tuned for hundreds of thousands of updates, a run of a few hundred steps trains
    its student towards targets of a nearly random network, and pretraining then buys little.
    Returns None when at most `limit` of the initialisation is left at `max_steps`.
    """
    share = init_share(cfg.decay, cfg.end_decay, cfg.anneal_steps, max_steps)
    if share <= limit:
        return None
    return (f"the EMA teacher keeps {100 * share:.0f}% of its random initialisation after train.max_steps={max_steps} "
            f"updates (model.teacher.decay={cfg.decay}, end_decay={cfg.end_decay}, anneal_steps={cfg.anneal_steps}): "
            "its targets stay close to a random network's. For short runs lower the decays so that "
            "sum(1 - decay) over the run is at least 5, e.g. model.teacher.decay=0.98 model.teacher.end_decay=0.998 "
            f"model.teacher.anneal_steps={max_steps}")


class EMATeacher:
    """An exponential moving average of (part of) the student.

    The teacher module is a deep copy made at construction, kept in fp32, in eval mode and
    without gradients. It is not a submodule of the student, so it never enters the
    student's optimizer or state_dict; checkpoints store it as a separate entry.

    Args:
        module: the student parts to average, as a module whose parameter names match the
            student's own (e.g. a ModuleDict of the student's `modality` and `encoder`).
        cfg: decay schedule.
        drop: dotted submodule paths removed from the copy because the teacher shares them
            with the student instead (e.g. "modality.local_encoder").
    """

    def __init__(self, module: nn.Module, cfg: TeacherConfig, drop: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.module = copy.deepcopy(module).float().eval()
        for path in drop:
            parent, _, name = path.rpartition(".")
            setattr(self.module.get_submodule(parent) if parent else self.module, name, None)
        self.module.requires_grad_(False)
        self.decay = cfg.decay
        self._pairs: list[tuple[torch.Tensor, torch.Tensor, bool]] | None = None
        names = [n for n, _ in self.module.named_parameters()]
        for prefix in cfg.copied:
            if not any(n == prefix or n.startswith(prefix + ".") for n in names):
                raise ValueError(f"model.teacher.copied: {prefix!r} names no teacher parameter")

    def _match(self, student: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
        """(teacher tensor, student tensor, averaged?) for every teacher parameter and buffer."""
        src = dict(student.named_parameters())
        src.update(dict(student.named_buffers()))
        pairs = []
        for name, t in list(self.module.named_parameters()) + list(self.module.named_buffers()):
            if name not in src:
                raise RuntimeError(f"teacher tensor {name!r} has no student counterpart")
            copied = any(name == p or name.startswith(p + ".") for p in self.cfg.copied)
            pairs.append((t, src[name], isinstance(t, nn.Parameter) and t.is_floating_point() and not copied))
        return pairs

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> float:
        """teacher <- decay * teacher + (1 - decay) * student, for the decay at `step` (>= 1).

        Parameters are matched to the student's by name; buffers and the parameters named by
        `cfg.copied` are copied. Returns the decay.
        """
        self.decay = ema_decay(step, self.cfg.decay, self.cfg.end_decay, self.cfg.anneal_steps)
        if self._pairs is None:
            self._pairs = self._match(student)
        averaged = [(t, s) for t, s, avg in self._pairs if avg]
        if self.decay < 1.0 and averaged:
            torch._foreach_lerp_([t for t, _ in averaged], [_full(s).detach().to(t.dtype) for t, s in averaged],
                                 1.0 - self.decay)
        for t, s, avg in self._pairs:
            if not avg:
                t.copy_(_full(s))
        return self.decay

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.decay = state["decay"]

    def to(self, device: torch.device | str) -> "EMATeacher":
        self.module.to(device)
        self._pairs = None
        return self
