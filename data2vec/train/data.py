"""Reproducible batching for pretraining, shared by every modality.

Each sample is drawn as (epoch, index) and transformed under a seed derived from
(run seed, epoch, index), so a resumed run sees exactly the batches and augmentations an
uninterrupted run would, whatever the number of loader workers.

Across ranks, an epoch is one global list of micro-batches; an optimizer step takes the next
`micro_per_step` of them and rank r of W takes every W-th one from offset r (`rank_plan`), so
W ranks see exactly the micro-batches one rank accumulating over all of them would.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data2vec.config import DataConfig, InputConfig, TrainConfig
from data2vec.train.distributed import rank_plan, split_batch

def build_pretrain_data(data: DataConfig, inp: InputConfig, train: TrainConfig) -> "PretrainData":
    """The pretraining data of `data.kind`, built by the modality that registers that kind."""
    from data2vec.modalities.registry import data_builder

    return data_builder(data.kind)(data, inp, train)


class PretrainData(Protocol):
    num_samples: int

    def configure(self, world_size: int, micro_batch: int) -> int:
        """Fix the micro-batch layout for `world_size` ranks; returns global micro-batches per step."""

    def batches_per_epoch(self) -> int:
        """Global micro-batches in one epoch."""

    def stream(self, epoch: int, start: int, rank: int, world_size: int,
               pin_memory: bool = False) -> Iterator[dict[str, Any]]:
        """This rank's micro-batches, endlessly, from global micro-batch `start` of `epoch` on."""

    def stream_state(self) -> dict[str, Any]:
        """This rank's extra stream position to checkpoint (empty when (epoch, start) says it all)."""

    def restore_stream(self, states: list[dict[str, Any]], rank: int) -> None:
        """Continue from `stream_state()` of every rank of the saved run."""


class _PlanSampler(Sampler[list]):
    """An endless batch sampler over `rank_plan` (one DataLoader serves the whole run, so its
    workers persist across epochs)."""

    def __init__(self, plan: Callable[[int], list], epoch: int, start: int, rank: int, world_size: int) -> None:
        self.args = (plan, epoch, start, rank, world_size)

    def __iter__(self) -> Iterator[list]:
        return rank_plan(*self.args)


class PlannedData:
    """`PretrainData.stream` for data whose epochs are lists of batches of (epoch, index) keys.

    Subclasses provide `plan(epoch)`, `items` (a Dataset keyed by (epoch, index)), `collate`,
    `seed` and `num_workers`.
    """

    def stream(self, epoch: int, start: int, rank: int = 0, world_size: int = 1,
               pin_memory: bool = False) -> Iterator[dict[str, Any]]:
        sampler = _PlanSampler(self.plan, epoch, start, rank, world_size)  # type: ignore[attr-defined]
        return epoch_loader(self.items, sampler, self.collate, self.seed, self.num_workers,  # type: ignore[attr-defined]
                            pin_memory=pin_memory)

    def stream_state(self) -> dict[str, Any]:
        return {}

    def restore_stream(self, states: list[dict[str, Any]], rank: int) -> None:
        """Nothing to do: (epoch, batch_in_epoch) in the run state is the whole position."""


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one draw; distinct for every (seed, epoch, index)."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) & ((1 << 63) - 1)


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Shuffled fixed-size batches of (epoch, index) for one epoch, from batch `start` on."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0) -> None:
        self.n, self.batch_size, self.seed, self.epoch, self.start = n, batch_size, seed, epoch, start

    def __len__(self) -> int:
        return max(0, self.n // self.batch_size - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        for b in range(self.start, self.n // self.batch_size):
            yield [(self.epoch, i) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]


class SeededDataset(Dataset):
    """Wraps a dataset whose items use torch's global RNG (e.g. torchvision transforms) so
    that item (epoch, index) is computed under its own seed."""

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.base[index]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask on Linux, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_num_workers() -> int:
    """Loader processes for `train.num_workers=auto`: one per CPU this process may use, less
    one for the training process itself, at most 8 (0 on a single CPU: load in-process)."""
    return max(0, min(8, usable_cpus() - 1))


def resolve_num_workers(num_workers: int | str) -> int:
    """`train.num_workers` as a count ("auto" -> `default_num_workers()`)."""
    return default_num_workers() if num_workers == "auto" else int(num_workers)


def epoch_loader(
    dataset: Dataset, plan: Sampler | list, collate: Callable, seed: int, num_workers: int | str = 0,
    pin_memory: bool = False,
) -> Iterator[dict[str, Any]]:
    """Iterate `plan` (batches of (epoch, index) keys) through a DataLoader.

    The loader gets its own generator: a loader without one draws its worker base seed from the
    global RNG each time an iterator starts, which would shift dropout and decoder noise after a
    resume (the iterator starts mid-epoch there, at the epoch start otherwise). `pin_memory`
    (for GPUs) lets the trainer copy batches with `non_blocking=True`.
    """
    num_workers = resolve_num_workers(num_workers)
    loader = DataLoader(dataset, batch_sampler=plan, collate_fn=collate, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed), pin_memory=pin_memory,
                        prefetch_factor=4 if num_workers else None)
    return iter(loader)


@dataclass
class FixedBatchData(PlannedData):
    """`PretrainData` for datasets batched at a fixed size (images, text blocks).

    `batch_size` is the global batch of one optimizer step; `configure` splits it into
    micro-batches of `micro_batch` samples (one per rank by default). Items that come back as
    None (unreadable files) are dropped by `collate`, which must report their number as
    "num_skipped".
    """

    dataset: Dataset
    collate: Callable[[list[Any]], dict[str, Any]]
    batch_size: int
    seed: int
    num_workers: int | str = 0

    def __post_init__(self) -> None:
        self.micro = self.batch_size
        self.items = SeededDataset(self.dataset, self.seed)

    @property
    def num_samples(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def configure(self, world_size: int, micro_batch: int = 0) -> int:
        self.micro, accum = split_batch(self.batch_size, world_size, micro_batch)
        if self.num_samples < self.micro:
            raise ValueError(f"{self.num_samples} samples are fewer than one micro-batch of {self.micro}")
        return accum * world_size

    def batches_per_epoch(self) -> int:
        return self.num_samples // self.micro

    def plan(self, epoch: int) -> list[list[tuple[int, int]]]:
        return list(EpochBatchSampler(self.num_samples, self.micro, self.seed, epoch))

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """The micro-batches of one epoch on one rank, from batch `start` on."""
        sampler = EpochBatchSampler(self.num_samples, self.micro, self.seed, epoch, start)
        return epoch_loader(self.items, sampler, self.collate, self.seed, self.num_workers)


class SkipCounter:
    """Counts samples skipped because they could not be read, and warns as they appear."""

    def __init__(self, what: str = "samples") -> None:
        self.what, self.total = what, 0

    def add(self, n: int, step: Optional[int] = None) -> None:
        if n:
            self.total += n
            where = f" at step {step}" if step is not None else ""
            warnings.warn(f"skipped {n} unreadable {self.what}{where} ({self.total} so far)", stacklevel=2)
