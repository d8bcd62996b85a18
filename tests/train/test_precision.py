"""train.bf16: true / false / auto, decided from the machine at run time and logged."""

import logging
from pathlib import Path

import pytest
import torch

from data2vec.config import ConfigError, apply_overrides
from data2vec.presets import get_preset, list_presets
from data2vec.train import precision
from data2vec.train.precision import choose_bf16, cpu_has_native_bf16, resolve_bf16
from data2vec.train.pretrain import Trainer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu_and_explicit_settings_win(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_bf16("auto", CPU)[0] is native
    assert resolve_bf16("auto", CUDA)[0] is True
    assert resolve_bf16(True, CPU)[0] is True and resolve_bf16(False, CUDA)[0] is False


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="train.bf16='fast'"):
        resolve_bf16("fast", CPU)


def test_cpu_detection_agrees_with_the_cpu_flags():
    info = Path("/proc/cpuinfo")
    if not info.exists():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = next(line.split(":", 1)[1].split() for line in info.read_text().splitlines() if line.startswith("flags"))
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_tile" in flags)


def test_every_preset_defaults_to_auto_and_overrides_parse():
    assert {get_preset(name).train.bf16 for name in list_presets()} == {"auto"}
    cfg = get_preset("data2vec2_image_tiny")
    assert apply_overrides(cfg, ["train.bf16=false"]).train.bf16 is False
    assert apply_overrides(apply_overrides(cfg, ["train.bf16=true"]), ["train.bf16=auto"]).train.bf16 == "auto"
    with pytest.raises(ConfigError, match="expected true, false or 'auto'"):
        apply_overrides(cfg, ["train.bf16=yes please"])


def test_the_trainer_logs_the_chosen_precision(fmnist_train, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    cfg = apply_overrides(get_preset("data2vec2_image_tiny"), [f"data.path={fmnist_train}", "data.limit=64",
                                                                "train.device=cpu"])
    with caplog.at_level(logging.INFO, logger="data2vec"):
        trainer = Trainer(cfg, tmp_path / "run")
    trainer.metrics.close()
    assert trainer.bf16 is False
    assert "precision: fp32 (train.bf16=auto; this CPU has no native BF16" in caplog.text
    with caplog.at_level(logging.INFO, logger="data2vec"):
        assert choose_bf16(True, CPU) is True
    assert "precision: bf16 autocast (train.bf16=true)" in caplog.text
