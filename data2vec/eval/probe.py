"""Frozen-feature evaluation: a linear probe (multinomial logistic regression) and kNN."""

from __future__ import annotations

import logging
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from data2vec.eval.features import pool_tokens, token_features, token_grid

log = logging.getLogger("data2vec")

@torch.no_grad()
def extract_features(
    encode: Callable[[dict[str, Tensor]], Tensor], dataset: Dataset, collate: Callable, batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor]:
    """Run `encode(batch) -> (B, F)` over a labeled dataset whose collated batches hold "label"
    (none when every sample of a batch was unreadable). Returns (N, F) float32, (N,) long."""
    feats, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        if "label" not in batch:
            continue
        on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        feats.append(encode(on_device).float().cpu())
        labels.append(batch["label"])
    if not feats:
        raise ValueError("no readable samples to extract features from")
    return torch.cat(feats), torch.cat(labels)


def encoder_features(model: nn.Module, pooling: str = "mean+cls") -> Callable[[dict[str, Tensor]], Tensor]:
    """A feature function for `extract_features` from a data2vec model of any modality (eval
    mode, no masks, the last layer; `eval.features` has every layer)."""
    model.eval()
    key = model.modality.input_key

    def encode(batch: dict[str, Tensor]) -> Tensor:
        x, pad, extra = token_features(model, model.cfg, batch[key], batch.get("padding_mask"))
        return pool_tokens(x, pad, extra, pooling, token_grid(model))

    return encode


def linear_probe(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
    weight_decay: float = 1e-4, max_iter: int = 300,
) -> float:
    """Standardize features, fit softmax regression with full-batch L-BFGS; return test top-1.

    Args:
        train_x: (N, F); train_y: (N,) int labels; test_x/test_y likewise.
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    linear = nn.Linear(xtr.shape[1], classes)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(xtr), train_y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (linear(xte).argmax(1) == test_y).float().mean().item()


def knn_accuracy(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int = 20, temperature: float = 0.07,
    chunk: int = 1024,
) -> float:
    """Weighted kNN on cosine similarity (the DINO/InstDisc protocol); returns test top-1."""
    train = F.normalize(train_x, dim=1)
    classes = int(max(train_y.max(), test_y.max())) + 1
    correct = 0
    for i in range(0, len(test_x), chunk):
        q = F.normalize(test_x[i : i + chunk], dim=1)
        sim, idx = (q @ train.T).topk(k, dim=1)  # (C, k)
        votes = torch.zeros(len(q), classes).scatter_add_(1, train_y[idx], (sim / temperature).exp())
        correct += int((votes.argmax(1) == test_y[i : i + chunk]).sum())
    return correct / len(test_x)


def flatten_pixels(batch: dict[str, Tensor]) -> Tensor:
    """The raw-pixel baseline's 'encoder' (image batches)."""
    return batch["image"].flatten(1)


def probe_report(
    train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], knn_k: Optional[int] = 20
) -> dict[str, float]:
    """Linear-probe (and kNN) top-1 for one set of features."""
    out = {"linear_top1": linear_probe(*train, *test)}
    if knn_k:
        out["knn_top1"] = knn_accuracy(*train, *test, k=knn_k)
    return out
