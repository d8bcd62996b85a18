"""train.num_workers=auto (loader processes from the machine) and the fused optimizer."""

import pytest
import torch

from data2vec.config import ConfigError, apply_overrides
from data2vec.presets import get_preset, list_presets
from data2vec.train import data as train_data
from data2vec.train.data import EpochBatchSampler, default_num_workers, epoch_loader
from data2vec.train.optim import build_optimizer


@pytest.mark.parametrize("cpus,workers", [(1, 0), (2, 1), (4, 3), (64, 8)])
def test_auto_workers_leave_one_cpu_to_training(monkeypatch, cpus, workers):
    monkeypatch.setattr(train_data.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_num_workers() == workers


def test_every_preset_uses_auto_workers_and_counts_parse():
    assert {get_preset(name).train.num_workers for name in list_presets()} == {"auto"}
    cfg = get_preset("data2vec2_image_tiny")
    assert apply_overrides(cfg, ["train.num_workers=2"]).train.num_workers == 2
    with pytest.raises(ConfigError, match="train.num_workers=-1"):
        apply_overrides(cfg, ["train.num_workers=-1"])
    with pytest.raises(ConfigError, match="expected a count >= 0 or auto"):
        apply_overrides(cfg, ["train.num_workers=many"])


def test_auto_workers_give_the_same_batches_as_in_process_loading(monkeypatch):
    monkeypatch.setattr(train_data, "default_num_workers", lambda: 1)
    data = [torch.tensor([i]) for i in range(12)]

    def dataset_item(key):
        return data[key[1]] * 10 + key[0]

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        __getitem__ = staticmethod(dataset_item)

    def batches(workers):
        plan = EpochBatchSampler(12, 4, seed=3, epoch=1)
        return [b.tolist() for b in epoch_loader(Items(), plan, torch.cat, seed=3, num_workers=workers)]

    assert batches("auto") == batches(0)


def test_optimizer_is_fused_on_cpu():
    opt = build_optimizer(torch.nn.Linear(3, 2), get_preset("data2vec2_image_tiny").train)
    assert opt.defaults["fused"] is True
