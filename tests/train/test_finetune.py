"""The generic fine-tuning loop with a toy task: schedule, warm-up freeze, frozen parameters."""

import pytest
import torch
from torch import nn

from data2vec.train.checkpoint import load_checkpoint
from data2vec.train.finetune import FinetuneConfig, FinetuneModel, finetune, tri_stage_lr


def test_tri_stage_lr():
    lr = lambda s: tri_stage_lr(s, 1.0, 100, 0.1, 0.4, 0.05)  # noqa: E731
    assert lr(0) == pytest.approx(0.01)
    assert lr(5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr(10) == lr(49) == 1.0
    assert lr(75) == pytest.approx(0.05**0.5)
    assert lr(100) == pytest.approx(0.05)


class ToyTask:
    """Regress y = 3x with backbone Linear -> head Linear."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)
        self.y = 3 * self.x.sum(1, keepdim=True)

    def batches(self, epoch):
        for i in range(0, 64, 16):
            yield {"x": self.x[i : i + 16], "y": self.y[i : i + 16]}

    def loss(self, model, batch, generator):
        loss = ((model.head(model.backbone(batch["x"])) - batch["y"]) ** 2).mean()
        return loss, {}

    def evaluate(self, model):
        with torch.no_grad():
            return {"mse": ((model.head(model.backbone(self.x)) - self.y) ** 2).mean().item()}


def test_loop_freezes_the_backbone_for_the_warm_up_and_keeps_frozen_parts_frozen(tmp_path, monkeypatch):
    backbone = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8))
    backbone[0].requires_grad_(False)  # like the frozen conv feature extractor
    model = FinetuneModel(backbone, nn.Linear(8, 1))
    first, second = backbone[0].weight.clone(), backbone[1].weight.clone()
    snapshots = []
    task = ToyTask()
    orig = task.loss

    def spy(model_, batch, g):
        snapshots.append(backbone[1].weight.clone())
        return orig(model_, batch, g)

    monkeypatch.setattr(task, "loss", spy)
    cfg = FinetuneConfig(lr=1e-2, max_steps=30, warmup_frac=0.0, hold_frac=1.0, freeze_backbone_steps=5,
                         eval_every=10, log_every=5, weight_decay=0.0)
    summary = finetune(model, task, cfg, tmp_path, lambda: {"outputs": ["a"]})
    assert all(torch.equal(s, second) for s in snapshots[:6])  # unchanged through the warm-up
    assert not torch.equal(backbone[1].weight, second)  # trained afterwards
    assert torch.equal(backbone[0].weight, first) and not backbone[0].weight.requires_grad
    mses = [h["valid_mse"] for h in summary["history"]]
    assert len(mses) == 3 and mses[-1] < mses[0]
    ck = load_checkpoint(tmp_path / "finetuned.pt")
    assert ck["format"] == "data2vec-finetune-checkpoint" and ck["outputs"] == ["a"]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 6
