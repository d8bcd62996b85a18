"""Unlabeled speech for pretraining: any audio folder or fairseq tsv manifest, length-bucketed.

Batches come from `LengthBucketSampler` (a cap on padded samples per batch and on
utterances per batch); crops are drawn from (seed, epoch, index), so `batches(epoch, start)`
is deterministic and a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
from torch.utils.data import Dataset

from data2vec.config import DataConfig, InputConfig, TrainConfig, register_kind
from data2vec.data.audio import AudioDataset, LengthBucketSampler, collate_audio
from data2vec.train.data import PlannedData, epoch_loader


@register_kind
@dataclass(frozen=True)
class AudioDataConfig(DataConfig):
    """Unlabeled audio: a folder (searched recursively) or a `.tsv` manifest."""

    kind: str = "audio"
    path: str = ""
    max_sample_size: int = 320_000  # longer utterances are randomly cropped (20 s)
    min_sample_size: int = 32_000  # shorter ones are dropped, with a count (2 s)
    max_samples_per_batch: int = 1_000_000  # padded 16 kHz samples per micro-batch
    normalize: bool = True  # zero mean, unit variance per utterance (data2vec needs it)
    # Global batch: length buckets per optimizer step over all ranks (0: one per rank).
    buckets_per_step: int = 0


class _EpochItems(Dataset):
    """Item (epoch, index) of an AudioDataset, cropped under its own (seed, epoch, index) RNG."""

    def __init__(self, base: AudioDataset, seed: int) -> None:
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> Optional[dict]:
        epoch, index = key
        return self.base.get_item(index, np.random.default_rng((self.seed, epoch, index)))


def collate_pretrain(items: list[Optional[dict]]) -> dict[str, Any]:
    """`collate_audio`, but a batch of only unreadable files carries just its skip count
    (the trainer counts it and moves on)."""
    batch = collate_audio(items)
    if batch["audio"].shape[0] == 0:
        return {"num_skipped": batch["num_skipped"]}
    return batch


@dataclass
class AudioPretrainData(PlannedData):
    """`PretrainData` over length-bucketed audio batches; one bucket is one micro-batch."""

    dataset: AudioDataset
    sampler: LengthBucketSampler
    seed: int
    num_workers: int | str = 0
    buckets_per_step: int = 0

    def __post_init__(self) -> None:
        self.items = _EpochItems(self.dataset, self.seed)
        self.collate = collate_pretrain

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def configure(self, world_size: int, micro_batch: int = 0) -> int:
        per_step = self.buckets_per_step or world_size
        if per_step % world_size:
            raise ValueError(f"data.buckets_per_step={per_step} is not a multiple of the {world_size} ranks")
        return per_step

    def batches_per_epoch(self) -> int:
        return len(self.sampler)

    def plan(self, epoch: int) -> list[list[tuple[int, int]]]:
        return [[(epoch, i) for i in b] for b in self.sampler.batches(epoch)]

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        return epoch_loader(self.items, self.plan(epoch)[start:], collate_pretrain, self.seed, self.num_workers)


def open_audio(data: AudioDataConfig, seed: int) -> AudioDataset:
    if not data.path:
        raise ValueError("data.path is empty: give an audio folder or a .tsv manifest, e.g. data.path=/my/audio")
    if data.min_sample_size > data.max_sample_size:
        raise ValueError(f"data.min_sample_size={data.min_sample_size} > data.max_sample_size={data.max_sample_size}")
    ds = AudioDataset.from_path(
        data.path, max_sample_size=data.max_sample_size, min_sample_size=data.min_sample_size,
        normalize=data.normalize, seed=seed,
    )
    if len(ds) == 0:
        raise ValueError(f"data.path={data.path}: no utterance is at least data.min_sample_size={data.min_sample_size} samples")
    return ds


def receptive_field(layers: tuple[tuple[int, int, int], ...]) -> int:
    """Fewest input samples that give the conv stack (channels, kernel, stride) one frame."""
    need = 1
    for _, kernel, stride in reversed(layers):
        need = (need - 1) * stride + kernel
    return need


def build_audio_data(data: AudioDataConfig, inp: InputConfig, train: TrainConfig) -> AudioPretrainData:
    need = receptive_field(inp.conv_layers)
    if data.min_sample_size < need:
        raise ValueError(f"data.min_sample_size={data.min_sample_size} is below the conv stack's receptive field "
                         f"of {need} samples: shorter utterances give no frames")
    from data2vec.data.shards import audio_shards, is_shard_folder

    if data.path and is_shard_folder(data.path):
        return audio_shards(data, train)
    ds = open_audio(data, train.seed)
    sampler = LengthBucketSampler(
        ds.sizes, data.max_samples_per_batch, shuffle=True, seed=train.seed,
        max_sample_size=data.max_sample_size, max_batch_size=train.batch_size,
    )
    return AudioPretrainData(ds, sampler, train.seed, train.num_workers, data.buckets_per_step)
