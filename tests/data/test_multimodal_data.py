"""Multimodal data: one modality per step in cycle order, each modality's own stream position,
resumable from any step, on any world size."""

import pytest

from data2vec.algorithms.multimodal import ModalitySource, MultiDataConfig
from data2vec.config import ConfigError, TrainConfig
from data2vec.data.multimodal import MultimodalData, build_multimodal_data, steps_of
from data2vec.presets import get_preset


class Counting:
    """`PretrainData` whose global micro-batch j of the endless stream is {"i": j}."""

    def __init__(self, per_epoch: int, per_step: int = 1, unreadable: bool = False) -> None:
        self.per_epoch, self.per_step, self.num_samples = per_epoch, per_step, per_epoch
        self.unreadable = unreadable

    def configure(self, world_size: int, micro_batch: int) -> int:
        return self.per_step * world_size

    def batches_per_epoch(self) -> int:
        return self.per_epoch

    def stream(self, epoch, start, rank=0, world_size=1, pin_memory=False):
        j = epoch * self.per_epoch + start + rank
        while True:
            # Batch 3 of an `unreadable` stream holds nothing but unreadable samples.
            yield {"num_skipped": 2} if self.unreadable and j == 3 else {"i": j}
            j += world_size

    def stream_state(self):
        return {"at": self.per_epoch}

    def restore_stream(self, states, rank):
        self.restored = states


def _data(cycle=("a", "b", "a", "c"), unreadable=False):
    return MultimodalData({"a": Counting(5, unreadable=unreadable), "b": Counting(4), "c": Counting(9)}, cycle)


def _take(data, n, epoch=0, start=0, rank=0, world=1):
    it = data.stream(epoch, start, rank, world)
    return [(b["modality"], b.get("i"), b.get("num_skipped", 0)) for b in (next(it) for _ in range(n))]


def test_steps_alternate_in_cycle_order_and_each_modality_keeps_its_position():
    data = _data(unreadable=True)
    assert data.configure(1, 0) == 1
    got = _take(data, 8)
    assert [m for m, _, _ in got] == ["a", "b", "a", "c", "a", "b", "a", "c"]
    assert [i for m, i, _ in got if m == "a"] == [0, 1, 2, 4]  # batch 3 held only unreadable samples: passed over
    assert [s for m, _, s in got if m == "a"] == [0, 0, 0, 2]  # ... and its count carried on
    assert steps_of(("a", "b", "a", "c"), "a", 7) == 4 and steps_of(("a", "b", "a", "c"), "c", 7) == 1


def test_a_stream_started_at_a_later_step_continues_the_full_one():
    data = _data()
    data.configure(1, 0)
    full = _take(data, 20)
    per_epoch = data.batches_per_epoch()
    assert per_epoch == 18
    for step in (5, 18, 19):  # also past the first "epoch" of the multimodal numbering
        assert _take(data, 20 - step, *divmod(step, per_epoch)) == full[step:]


def test_ranks_split_each_step_of_one_modality():
    data = _data(("a", "b"))
    assert data.configure(2, 0) == 2
    rank0, rank1 = _take(data, 4, rank=0, world=2), _take(data, 4, rank=1, world=2)
    assert [(m, i) for m, i, _ in rank0] == [("a", 0), ("b", 0), ("a", 2), ("b", 2)]
    assert [(m, i) for m, i, _ in rank1] == [("a", 1), ("b", 1), ("a", 3), ("b", 3)]


def test_modalities_must_split_steps_alike_and_resume_state_is_per_modality():
    data = MultimodalData({"a": Counting(5, per_step=1), "b": Counting(5, per_step=2)}, ("a", "b"))
    with pytest.raises(ValueError, match="same number of micro-batches per step"):
        data.configure(1, 0)
    data = _data()
    assert data.stream_state() == {"a": {"at": 5}, "b": {"at": 4}, "c": {"at": 9}}
    data.restore_stream([{"a": 1, "b": 2, "c": 3}], 0)
    assert data.parts["b"].restored == [2]


def test_the_cycle_and_the_sources_must_match_the_modalities():
    cfg = get_preset("data2vec2_multi_tiny")
    train = TrainConfig()
    with pytest.raises(ConfigError, match="data.cycle"):
        build_multimodal_data(MultiDataConfig(sources=cfg.data.sources, cycle=("image", "text")),
                              cfg.model.input, train)
    with pytest.raises(ConfigError, match="give each one source"):
        build_multimodal_data(MultiDataConfig(sources=cfg.data.sources[:2] + (ModalitySource(name="video"),)),
                              cfg.model.input, train)
