"""Metric sinks: a JSONL file, TensorBoard and the progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional


class MetricLogger:
    """Writes one JSON object per logged step to `metrics.jsonl` and scalars to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.file = open(self.path, "a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Write one row; 0-dim tensors (a training step's device-side metrics) become floats."""
        metrics = {k: v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v for k, v in metrics.items()}
        self.file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(path: Path, last_step: int) -> Optional[int]:
    """Drop lines logged after `last_step` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return None
    rows = [r for r in read_metrics(path) if r["step"] <= last_step]
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return len(rows)
