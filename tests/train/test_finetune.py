"""The one fine-tuning loop on image classification at tiny size: learning, exact resume,
bf16, gradient accumulation, layer-wise lr decay, schedules, the stalled-loss warning."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from data2vec.config import apply_overrides
from data2vec.recipes import get_recipe
from data2vec.train.checkpoint import load_checkpoint
from data2vec.train.finetune import (Finetuner, block_index, finetune_lr, finetune_param_groups, loss_stalled,
                                     stall_check_step)
from data2vec.train.finetune_config import FinetuneTrainConfig
from data2vec.train.finetune_image import stratified_split
from data2vec.train.finetune_run import build_run, load_finetuned, run_finetune


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    """A folder of 28x28 grayscale PNGs in three classes: horizontal stripes, vertical stripes, blobs."""
    root = tmp_path_factory.mktemp("stripes")
    rng = np.random.default_rng(0)
    for cls in ("horizontal", "vertical", "blank"):
        (root / cls).mkdir()
        for i in range(40):
            img = rng.normal(60, 20, (28, 28))
            phase = int(rng.integers(0, 4))
            if cls == "horizontal":
                img[phase::4] += 150
            elif cls == "vertical":
                img[:, phase::4] += 150
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


def _cfg(stripes, *extra):
    return apply_overrides(get_recipe("image_tiny"), [
        f"data.train={stripes}", "data.test=", "data.valid_size=30", "data.label_frac=1.0", "train.device=cpu",
        *extra])


def test_image_finetuning_learns_and_writes_a_loadable_model(stripes, tmp_path):
    cfg = _cfg(stripes, "train.epochs=6", "train.lr=3e-3", "data.mixup=0", "data.cutmix=0", "data.randaug_magnitude=0",
               "train.eval_every=6", f"data.test={stripes}")
    results = run_finetune(cfg, tmp_path / "run", progress=False)
    accs = [row["valid_accuracy"] for row in results["history"]]
    assert max(accs) > 60, accs  # chance: 33%
    assert results["valid"]["accuracy"] == max(accs)  # the best evaluation's weights are kept
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["test"]["accuracy"] == results["test"]["accuracy"] and on_disk["updates"] == 6 * 5
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 30 and "valid_accuracy" in rows[-1]
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    model, loaded, pre, outputs = load_finetuned(tmp_path / "run" / "finetuned.pt")
    assert loaded == cfg and outputs == ["blank", "horizontal", "vertical"] and not model.training
    assert not any(k.startswith("decoder") for k in model.state_dict())


def test_resume_mid_run_is_exact(stripes, tmp_path, interrupted_finetune):
    # Augmentation, mixup/cutmix, drop path and label smoothing all on: every random draw must repeat.
    cfg = _cfg(stripes, "train.epochs=2", "train.ckpt_every=3", "train.eval_every=4")
    full = run_finetune(cfg, tmp_path / "full", progress=False)
    interrupted_finetune(cfg, tmp_path / "cut", 6)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["state"]["step"] == 3
    resumed = run_finetune(cfg, tmp_path / "cut", resume=True, progress=False)
    assert resumed["history"] == full["history"]
    a, b = (load_checkpoint(tmp_path / d / "finetuned.pt")["model"] for d in ("full", "cut"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # rows logged after the checkpoint were dropped, not repeated


def test_gradient_accumulation_matches_one_big_batch(stripes, tmp_path):
    # No augmentation randomness in the model: dropout/drop path off, so 2 x 4 == 1 x 8 up to rounding.
    common = ["model.drop_path=0", "data.mixup=0", "data.cutmix=0", "train.max_steps=1", "train.label_smoothing=0",
              "train.clip_norm=0", "train.warmup_frac=0", "train.bf16=false"]
    weights = []
    for i, extra in enumerate((["train.batch_size=8", "train.grad_accum=1"], ["train.batch_size=4", "train.grad_accum=2"])):
        cfg = _cfg(stripes, *common, *extra)
        pre, model, task = build_run(cfg)
        task.train_set.transform = task.eval_sets["valid"].dataset.transform  # deterministic inputs
        tuner = Finetuner(cfg, pre, model, task, tmp_path / str(i))
        tuner.train_step(tuner._batches())
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], atol=2e-6, rtol=1e-4)


def test_bf16_autocast_runs_the_forward_in_bfloat16(stripes, tmp_path):
    cfg = _cfg(stripes, "train.bf16=true", "train.max_steps=2")
    pre, model, task = build_run(cfg)
    seen = []
    model.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o[0].dtype))
    tuner = Finetuner(cfg, pre, model, task, tmp_path / "bf16")
    before = model.head.head.weight.detach().clone()
    logs = tuner.train_step(tuner._batches())
    assert seen and seen[0] == torch.bfloat16
    assert np.isfinite(logs["loss"]) and not torch.equal(before, model.head.head.weight)
    assert model.head.head.weight.dtype == torch.float32  # master weights stay fp32
    assert 0 <= tuner.evaluate("valid")["accuracy"] <= 100


def test_layer_decay_scales_blocks_only(stripes):
    cfg = _cfg(stripes, "train.layer_decay=0.5")
    _, model, _ = build_run(cfg)
    n = len(model.modality.context_encoder.blocks) + len(model.encoder.blocks)
    assert block_index("modality.context_encoder.blocks.0.attn.qkv.weight", 1) == 1
    assert block_index(f"encoder.blocks.{n - 2}.mlp.fc1.weight", 1) == n
    assert block_index("head.head.weight", 1) is None and block_index("modality.local_encoder.proj.weight", 1) is None
    groups = finetune_param_groups(model, 0.05, 0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert scale[id(params["modality.context_encoder.blocks.0.attn.qkv.weight"])] == 0.5 ** n
    assert scale[id(params[f"encoder.blocks.{n - 2}.attn.qkv.weight"])] == 0.5
    assert scale[id(params["head.head.weight"])] == scale[id(params["modality.extra_tokens"])] == 1.0
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(params["head.head.bias"])] == 0.0 and decay[id(params["head.head.weight"])] == 0.05


def test_schedules_stall_check_and_stratified_split():
    tc = FinetuneTrainConfig(lr=1.0, min_lr=0.1, warmup_frac=0.1)
    assert finetune_lr(0, tc, 100) == pytest.approx(0.1) and finetune_lr(9, tc, 100) == pytest.approx(1.0)
    assert finetune_lr(100, tc, 100) == pytest.approx(0.1)
    lin = FinetuneTrainConfig(lr=1.0, schedule="linear", warmup_frac=0.1)
    assert finetune_lr(55, lin, 100) == pytest.approx(0.5)
    tri = FinetuneTrainConfig(lr=1.0, min_lr=0.05, schedule="tri_stage", warmup_frac=0.1, hold_frac=0.4)
    assert finetune_lr(30, tri, 100) == 1.0 and finetune_lr(100, tri, 100) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="train.schedule"):
        finetune_lr(0, FinetuneTrainConfig(schedule="step"), 10)
    assert loss_stalled([1.79, 1.80, 1.79, 1.80]) and not loss_stalled([1.8, 1.5, 1.2, 0.9])
    # checked after the first epoch or the warm-up, whichever ends later, never past the run
    assert stall_check_step(19, FinetuneTrainConfig(warmup_frac=0.1), 1600) == 160
    assert stall_check_step(50, FinetuneTrainConfig(warmup_frac=0.1), 200) == 50
    assert stall_check_step(50, FinetuneTrainConfig(warmup_frac=0.1), 30) == 30
    labels = [0] * 50 + [1] * 30 + [2] * 20
    taken, rest = stratified_split(labels, 0.1, 0)
    assert sorted(labels[i] for i in taken) == [0] * 5 + [1] * 3 + [2] * 2 and len(rest) == 90
    held, _ = stratified_split(labels, 20, 1)
    assert len(held) == 20 and stratified_split(labels, 20, 1)[0] == held


def test_a_stalled_first_epoch_warns(stripes, tmp_path, caplog):
    cfg = _cfg(stripes, "train.lr=1e-9", "train.epochs=1", "data.mixup=0", "data.cutmix=0")
    with caplog.at_level(logging.WARNING, logger="data2vec"):
        run_finetune(cfg, tmp_path / "stall", progress=False)
    assert "did not move in the first" in caplog.text and "train.lr" in caplog.text


def test_bad_settings_are_clear_errors(stripes, tmp_path):
    with pytest.raises(ValueError, match="select_metric"):
        run_finetune(_cfg(stripes, "train.max_steps=1", "train.select_metric=wer"), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="label_frac"):
        build_run(_cfg(stripes, "data.label_frac=0"))
    with pytest.raises(ValueError, match="needs a"):
        build_run(_cfg(stripes, "preset=data2vec2_text_tiny"))
    with pytest.raises(ValueError, match="no labels"):
        build_run(_cfg(stripes, f"data.train={stripes / 'blank'}"))
