"""train.num_workers=auto (loader processes from the machine) and the fused optimizer."""

import pytest
import torch

from data2vec.config import ConfigError, apply_overrides
from data2vec.presets import get_preset, list_presets
from data2vec.train import data as train_data
from data2vec.train.data import build_pretrain_data, default_num_workers
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
    with pytest.raises(ConfigError, match="train.num_workers='many': expected int or 'auto'"):
        apply_overrides(cfg, ["train.num_workers=many"])


def test_auto_workers_load_the_same_batches_as_in_process(monkeypatch, fmnist_train):
    monkeypatch.setattr(train_data, "default_num_workers", lambda: 1)
    cfg = apply_overrides(get_preset("data2vec2_image_tiny"), [f"data.path={fmnist_train}", "data.limit=64"])
    assert cfg.train.num_workers == "auto"
    data = build_pretrain_data(cfg.data, cfg.model.input, cfg.train)
    data0 = build_pretrain_data(cfg.data, cfg.model.input, apply_overrides(cfg, ["train.num_workers=0"]).train)
    first, first0 = next(data.stream(0, 0)), next(data0.stream(0, 0))
    assert torch.equal(first["image"], first0["image"])  # the same batches with or without loader processes


def test_optimizer_is_fused_on_cpu():
    opt = build_optimizer(torch.nn.Linear(3, 2), get_preset("data2vec2_image_tiny").train)
    assert opt.defaults["fused"] is True
