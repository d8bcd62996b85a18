"""Contract tests over every fine-tuning recipe: it round-trips, names a preset whose input fits
its task and a data kind of that task, and at tiny size its model takes a fine-tuning step
(head forward, loss, backward, layer-wise lr, optimizer step)."""

import dataclasses

import pytest
import torch

from data2vec.config import LabeledDataConfig, apply_overrides, from_dict, to_dict
from data2vec.data.synthetic import synthetic_batch
from data2vec.heads.finetuned import HEAD_KINDS, HeadConfig
from data2vec.modalities.registry import task_spec, tasks
from data2vec.models import build_finetuned
from data2vec.presets import get_preset, tiny_overrides
from data2vec.recipes import default_recipe, get_recipe, list_recipes
from data2vec.train.finetune import finetune_lr, finetune_param_groups
from data2vec.train.finetune_config import FinetuneConfig
from data2vec.train.finetune_run import feature_mask, finetune_model_config, input_kinds, task_class
from data2vec.train.precision import autocast, resolve_bf16
from data2vec.train.step import backward, clip_and_step, set_lr


@pytest.mark.parametrize("name", list(list_recipes()))
def test_every_recipe_at_tiny_size(name):
    cfg = get_recipe(name)
    assert cfg.task in tasks() and isinstance(cfg.data, LabeledDataConfig) and cfg.data.kind
    assert callable(task_class(cfg.task))
    assert from_dict(FinetuneConfig, to_dict(cfg)) == cfg
    pre = get_preset(cfg.preset)
    assert pre.model.input.kind in input_kinds(cfg.task)
    tc = cfg.train
    assert tc.max_steps > 0 or tc.epochs > 0
    total = tc.max_steps or 10 * tc.epochs
    assert all(finetune_lr(s, tc, total) >= 0 for s in (0, total // 2, total))
    tiny = apply_overrides(pre, tiny_overrides(pre.model.input.kind, pre.model.version))
    head = HeadConfig(task_spec(cfg.task).head, 1 if getattr(cfg.data, "regression", False) else 3,
                      final_norm=cfg.model.pooling == "cls", pooling=cfg.model.pooling, dropout=cfg.model.head_dropout)
    model = build_finetuned(finetune_model_config(tiny.model, cfg.model), head, None,
                            cfg.model.freeze_feature_extractor, feature_mask(cfg.model)).train()
    optimizer = torch.optim.AdamW(finetune_param_groups(model, tc.weight_decay, tc.layer_decay), betas=tc.betas)
    set_lr(optimizer, finetune_lr(total // 2, tc, total))
    batch = synthetic_batch(tiny.model.input, 2)
    x = batch[model.modality.input_key]
    with autocast(resolve_bf16(tc.bf16, torch.device("cpu"))[0], torch.device("cpu")):
        out = model(x, batch.get("padding_mask"), torch.Generator().manual_seed(0))
    assert torch.isfinite(out.float()).all()
    backward(out.float().pow(2).mean(), tc.grad_accum)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    clip_and_step(model.parameters(), optimizer, tc.clip_norm, 0)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    if cfg.model.freeze_feature_extractor:
        assert not any(p.requires_grad for p in model.modality.local_encoder.parameters())


def test_every_task_has_a_small_default_recipe_and_a_known_head():
    for task, spec in tasks().items():
        assert get_recipe(default_recipe(task)).task == task
        assert spec.head in HEAD_KINDS


def test_meta_values_in_the_named_recipes():
    base = get_recipe("image_vit_base_imagenet")
    assert (base.train.lr, base.train.layer_decay, base.model.drop_path) == (1e-3, 0.65, 0.1)
    assert base.train.batch_size * base.train.grad_accum == 512 and base.train.max_steps == 250_200
    large = get_recipe("image_vit_large_imagenet")
    assert (large.train.lr, large.train.layer_decay, large.train.clip_norm) == (5e-4, 0.75, 4.0)
    assert get_recipe("ctc_10h").train.max_steps == 20_000 and get_recipe("ctc_1h").train.lr == 3e-4
    assert get_recipe("glue_sts_b").data.regression and get_recipe("glue_cola").train.select_metric == "mcc"
    with pytest.raises(KeyError, match="unknown recipe"):
        get_recipe("nope")
    assert dataclasses.replace(base, init="x").init == "x"
