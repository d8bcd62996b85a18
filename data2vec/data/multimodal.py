"""Pretraining data of a multimodal run: each modality's own data, alternated per optimizer step.

Step s takes all its micro-batches from modality `cycle[s % len(cycle)]`. Every modality keeps
its own loader and its own position: modality m's stream stands at (micro-batches per step) x
(steps before s that were m's), so a resumed run continues every stream exactly where the
uninterrupted run would be, on any world size that keeps the micro-batch layout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

from data2vec.algorithms.multimodal import MultiDataConfig, MultiInputConfig, branch
from data2vec.config import ConfigError, TrainConfig
from data2vec.data.synthetic import synthetic_batch
from data2vec.train.data import PretrainData, build_pretrain_data


def steps_of(cycle: tuple[str, ...], name: str, steps: int) -> int:
    """How many of the first `steps` steps train modality `name`."""
    full, rest = divmod(steps, len(cycle))
    return full * cycle.count(name) + cycle[:rest].count(name)


@dataclass
class MultimodalData:
    """`PretrainData` over the modalities' own `PretrainData`, one modality per step.

    One "epoch" is as many micro-batches as the modalities' epochs hold together; it only
    numbers positions (each modality wraps its own epochs).
    """

    parts: dict[str, PretrainData]
    cycle: tuple[str, ...]

    def __post_init__(self) -> None:
        self.per_step = 0

    @property
    def num_samples(self) -> int:
        return sum(p.num_samples for p in self.parts.values())

    def configure(self, world_size: int, micro_batch: int) -> int:
        counts = {name: part.configure(world_size, micro_batch) for name, part in self.parts.items()}
        if len(set(counts.values())) > 1:
            raise ValueError(f"data.sources: every modality must take the same number of micro-batches per step, "
                             f"got {counts}; choose batch sizes (or train.micro_batch) that split alike")
        self.per_step = next(iter(counts.values()))
        return self.per_step

    def batches_per_epoch(self) -> int:
        return sum(p.batches_per_epoch() for p in self.parts.values())

    def stream(self, epoch: int, start: int, rank: int = 0, world_size: int = 1,
               pin_memory: bool = False) -> Iterator[dict[str, Any]]:
        """This rank's micro-batches from the step at global micro-batch `start` of `epoch` on,
        each tagged with its modality ("modality": name)."""
        first, offset = divmod(epoch * self.batches_per_epoch() + start, self.per_step)
        if offset:
            raise ValueError(f"position {epoch}/{start} is not at a step boundary ({self.per_step} per step)")
        streams = {}
        for name, part in self.parts.items():
            at = self.per_step * steps_of(self.cycle, name, first)
            streams[name] = part.stream(*divmod(at, part.batches_per_epoch()), rank, world_size, pin_memory)
        return self._interleave(streams, first, world_size)

    def _interleave(self, streams: dict[str, Iterator[dict[str, Any]]], step: int,
                    world_size: int) -> Iterator[dict[str, Any]]:
        while True:
            name = self.cycle[step % len(self.cycle)]
            for _ in range(self.per_step // world_size):
                yield {**_readable(streams[name]), "modality": name}
            step += 1

    def stream_state(self) -> dict[str, Any]:
        return {name: part.stream_state() for name, part in self.parts.items()}

    def restore_stream(self, states: list[dict[str, Any]], rank: int) -> None:
        for name, part in self.parts.items():
            part.restore_stream([s.get(name, {}) for s in states], rank)


def _readable(stream: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """The next batch with samples in it: batches of nothing but unreadable samples are passed
    over here, their count carried on (the step must not take another modality's batch). As in
    a single-modality run, such a batch does not move the recorded position, so a resume after
    one replays that modality's stream from one batch earlier."""
    skipped = 0
    batch = next(stream)
    while set(batch) <= {"num_skipped"}:
        skipped += int(batch.get("num_skipped", 0))
        batch = next(stream)
    if skipped:
        batch = {**batch, "num_skipped": int(batch.get("num_skipped", 0)) + skipped}
    return batch


def build_multimodal_data(data: MultiDataConfig, inp: MultiInputConfig, train: TrainConfig) -> MultimodalData:
    """Each modality's data from its own config and batch size; the cycle checked against them."""
    names = [b.name for b in inp.branches]
    sources = {s.name: s for s in data.sources}
    if sorted(sources) != sorted(names) or len(sources) != len(data.sources):
        raise ConfigError(f"data.sources name the modalities {[s.name for s in data.sources]}; "
                          f"model.input.branches has {names}: give each one source")
    cycle = data.cycle or tuple(names)
    unknown = sorted(set(cycle) - set(names))
    if unknown or not set(names) <= set(cycle):
        raise ConfigError(f"data.cycle={list(cycle)}: must name every modality of {names} and no other")
    parts = {}
    for name in names:
        src = sources[name]
        part_train = dataclasses.replace(train, batch_size=src.batch_size)
        parts[name] = build_pretrain_data(src.data, branch(inp, name).input, part_train)
    return MultimodalData(parts, cycle)


def synthetic_multimodal(cfg: MultiInputConfig, batch_size: int) -> dict[str, Any]:
    """A batch of the first modality, tagged with its name (see `synthetic_batches` for all)."""
    first = cfg.branches[0]
    return {**synthetic_batch(first.input, batch_size), "modality": first.name}


def synthetic_batches(cfg: MultiInputConfig, batch_size: int) -> dict[str, dict[str, Any]]:
    """One tagged synthetic batch per modality: {name: batch}."""
    return {b.name: {**synthetic_batch(b.input, batch_size), "modality": b.name} for b in cfg.branches}
