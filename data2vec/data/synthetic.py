"""Random batches of the right shapes for any input config (contract tests, smoke runs)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from data2vec.config import InputConfig


def synthetic_batch(cfg: InputConfig, batch_size: int = 2) -> dict[str, Any]:
    """Random inputs of the right shapes for input config `cfg` (its modality's `synthetic_batch`)."""
    from data2vec.modalities.registry import synthetic_batch as make

    return make(cfg, batch_size)


class SyntheticData:
    """`PretrainData` that repeats one batch from `make(micro_batch_size)`: measures the training
    step alone (benchmarks, smoke runs), with no file reading or decoding in the way."""

    def __init__(self, make: Callable[[int], dict[str, Any]], batch_size: int) -> None:
        self.make, self.batch_size, self.micro = make, batch_size, batch_size
        self.num_samples = 1 << 30

    def configure(self, world_size: int, micro_batch: int = 0) -> int:
        from data2vec.train.distributed import split_batch

        self.micro, accum = split_batch(self.batch_size, world_size, micro_batch)
        return accum * world_size

    def batches_per_epoch(self) -> int:
        return self.num_samples // self.micro

    def stream(self, epoch: int, start: int, rank: int = 0, world_size: int = 1, pin_memory: bool = False):
        batch = self.make(self.micro)
        if pin_memory:
            batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
        while True:
            yield batch

    def stream_state(self) -> dict[str, Any]:
        return {}

    def restore_stream(self, states: list[dict[str, Any]], rank: int) -> None:
        """Nothing to restore: every batch is the same."""
