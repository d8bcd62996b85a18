"""train.compile: true / false / auto, decided from the machine and the precision, logged; the
compiled blocks match eager and do not recompile for every new length or padding mask."""

import logging

import pytest
import torch

from data2vec.config import ConfigError, EncoderConfig, apply_overrides
from data2vec.presets import get_preset
from data2vec.recipes import get_recipe
from data2vec.train import compilation
from data2vec.train.compilation import choose_compile, compile_blocks, resolve_compile

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("compiler", [True, False])
def test_auto_compiles_under_bf16_where_a_compiler_exists(monkeypatch, compiler):
    monkeypatch.setattr(compilation, "has_compiler", lambda device: compiler)
    assert resolve_compile("auto", CPU, bf16=True)[0] is compiler
    assert resolve_compile("auto", CUDA, bf16=False)[0] is compiler
    # fp32 on a CPU stays eager either way (measured: compiled blocks are not faster there).
    on, why = resolve_compile("auto", CPU, bf16=False)
    assert not on and ("fp32 on CPU" in why) is compiler
    # Explicit settings win over the machine.
    assert resolve_compile(True, CPU, bf16=False)[0] is True and resolve_compile(False, CUDA, bf16=True)[0] is False


def test_the_compiler_check_looks_for_a_cpp_compiler(monkeypatch):
    monkeypatch.setattr(compilation.shutil, "which", lambda name: None)
    assert not compilation.has_compiler(CPU)
    monkeypatch.setattr(compilation.shutil, "which", lambda name: "/usr/bin/g++" if name == "g++" else None)
    assert compilation.has_compiler(CPU)


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="train.compile='fast'"):
        resolve_compile("fast", CPU, bf16=True)
    with pytest.raises(ConfigError, match="train.compile=.fast."):
        apply_overrides(get_preset("data2vec2_image_tiny"), ["train.compile=fast"])
    cfg = apply_overrides(get_preset("data2vec2_image_tiny"), ["train.compile=auto"])
    assert cfg.train.compile == "auto" and apply_overrides(cfg, ["train.compile=false"]).train.compile is False


def test_choice_is_logged(monkeypatch, caplog):
    monkeypatch.setattr(compilation, "has_compiler", lambda device: True)
    with caplog.at_level(logging.INFO, logger="data2vec"):
        assert choose_compile("auto", CPU, bf16=True) is True
        assert choose_compile(False, CPU, bf16=True) is False
    assert "torch.compile: Transformer blocks compiled (train.compile=auto; bf16 autocast on a CPU" in caplog.text
    assert "torch.compile: eager (train.compile=false)" in caplog.text


def test_finetuning_compiles_the_backbone_blocks(tmp_path, monkeypatch):
    # Compiling is lazy: wrapping the blocks costs nothing until the first forward.
    import numpy as np
    from PIL import Image

    from data2vec.nn.block import Block
    from data2vec.train.finetune import Finetuner
    from data2vec.train.finetune_run import build_run

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.full((28, 28), 30 * i, np.uint8)).save(tmp_path / "data" / cls / f"{i}.png")
    monkeypatch.setattr(compilation, "has_compiler", lambda device: True)
    cfg = apply_overrides(get_recipe("image_tiny"), [
        f"data.train={tmp_path / 'data'}", "data.test=", "data.valid_size=4", "data.label_frac=1.0",
        "train.batch_size=4", "train.device=cpu", "train.compile=auto", "train.bf16=true"])
    pre, model, task = build_run(cfg)
    Finetuner(cfg, pre, model, task, tmp_path / "run")
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)


@pytest.mark.slow
def test_compiled_blocks_match_eager_without_recompiling_per_shape():
    from torch._dynamo.utils import counters

    from data2vec.nn.encoder import TransformerEncoder

    torch.manual_seed(0)
    enc = TransformerEncoder(EncoderConfig(dim=32, num_heads=4, depth=2, mlp_ratio=2.0)).eval()
    eager = TransformerEncoder(EncoderConfig(dim=32, num_heads=4, depth=2, mlp_ratio=2.0)).eval()
    eager.load_state_dict(enc.state_dict())
    assert compile_blocks(enc) == 2
    torch._dynamo.reset()
    counters.clear()
    for T in (9, 11, 13, 17, 23):  # lengths of length-bucketed audio or text, each with padding
        x = torch.randn(3, T, 32)
        pad = torch.arange(T)[None, :] >= torch.tensor([T, T - 2, T - 5])[:, None]
        out, ref = enc(x, pad), eager(x, pad)
        out.x.sum().backward()
        torch.testing.assert_close(out.x, ref.x, rtol=1e-4, atol=1e-5)
    # The first length compiles static shapes, the second one dynamic ones; the rest reuse them.
    assert counters["stats"]["unique_graphs"] <= 4  # forward graphs, counted with their backward
