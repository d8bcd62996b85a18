"""Batching for variable-length waveforms: zero-padding collate and a length-bucketing sampler."""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["collate_audio", "LengthBucketSampler"]

logger = logging.getLogger(__name__)


def collate_audio(items: Sequence[dict | None]) -> dict:
    """Pad a list of ``{"audio": (T_i,), "index": int}`` items (``None`` = unusable) into a batch.

    Returns ``audio`` (B, T) float32 zero-padded to the longest item, ``padding_mask`` (B, T) bool
    with True on padding, ``lengths`` (B,) long, ``index`` (B,) long and ``num_skipped`` (int, the
    number of ``None`` items dropped). B may be 0 when every item was unusable; callers skip such a
    batch.
    """
    kept = [item for item in items if item is not None]
    lengths = torch.tensor([int(item["audio"].shape[0]) for item in kept], dtype=torch.long)
    max_len = int(lengths.max()) if kept else 0
    audio = torch.zeros(len(kept), max_len, dtype=torch.float32)
    for row, item in enumerate(kept):
        audio[row, : lengths[row]] = item["audio"]
    padding_mask = torch.arange(max_len)[None, :] >= lengths[:, None]
    return {
        "audio": audio,
        "padding_mask": padding_mask,
        "lengths": lengths,
        "index": torch.tensor([int(item["index"]) for item in kept], dtype=torch.long),
        "num_skipped": len(items) - len(kept),
    }


class LengthBucketSampler(Sampler[list[int]]):
    """Batch sampler grouping items of similar length under a padded-samples budget.

    Items are sorted by length (capped at ``max_sample_size``, since longer ones are cropped) and
    packed greedily so that ``batch_size * longest_item <= max_samples_per_batch``. An item longer
    than the budget on its own gets a batch of one instead of being dropped. With ``shuffle``,
    equal-length items are tie-broken at random and the batch order is shuffled; both depend only
    on ``(seed, epoch)``. With ``num_replicas > 1`` each rank gets every ``num_replicas``-th batch,
    and the batch list is first padded by repeating batches so all ranks see the same count
    (distributed training would otherwise hang on the last step).
    """

    def __init__(
        self,
        sizes: Sequence[int] | np.ndarray,
        max_samples_per_batch: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        *,
        max_sample_size: int | None = None,
        max_batch_size: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if max_samples_per_batch <= 0:
            raise ValueError(f"max_samples_per_batch must be positive, got {max_samples_per_batch}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        eff = np.asarray(sizes, dtype=np.int64).reshape(-1)
        if max_sample_size is not None:
            eff = np.minimum(eff, max_sample_size)
        # Length-0 entries (unknown or empty files) still cost a row; counting them as 1 keeps
        # the batch size bounded.
        self.effective_sizes = np.maximum(eff, 1)
        self.max_samples_per_batch = int(max_samples_per_batch)
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.num_replicas = num_replicas
        self.rank = rank
        self.num_oversized = int((self.effective_sizes > self.max_samples_per_batch).sum())
        if self.num_oversized:
            logger.warning(
                "%d items are longer than max_samples_per_batch=%d; each gets a batch of its own",
                self.num_oversized, self.max_samples_per_batch,
            )
        # The greedy packing depends only on the sorted length sequence, so the number of
        # batches is the same for every epoch.
        self._num_batches = len(self._pack(np.argsort(self.effective_sizes, kind="stable")))
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling for the next pass."""
        self.epoch = int(epoch)

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        cap, max_bs = self.max_samples_per_batch, self.max_batch_size
        for idx in order.tolist():
            # ``order`` is ascending, so the newcomer is the batch's longest item.
            longest = int(self.effective_sizes[idx])
            too_long = (len(current) + 1) * longest > cap
            full = too_long or (max_bs is not None and len(current) >= max_bs)
            if current and full:
                batches.append(current)
                current = []
            current.append(idx)
        if current:
            batches.append(current)
        return batches

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches (lists of dataset indices) for ``epoch`` (default: current)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        n = len(self.effective_sizes)
        if self.shuffle:
            rng = np.random.default_rng((self.seed, epoch))
            order = np.lexsort((rng.permutation(n), self.effective_sizes))
            all_batches = self._pack(order)
            all_batches = [all_batches[i] for i in rng.permutation(len(all_batches))]
        else:
            all_batches = self._pack(np.argsort(self.effective_sizes, kind="stable"))
        if self.num_replicas > 1 and all_batches:
            missing = -len(all_batches) % self.num_replicas
            all_batches = all_batches + [all_batches[i % len(all_batches)] for i in range(missing)]
            all_batches = all_batches[self.rank :: self.num_replicas]
        self._cache = (epoch, all_batches)
        return all_batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return -(-self._num_batches // self.num_replicas)
