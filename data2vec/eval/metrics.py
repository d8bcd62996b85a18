"""Evaluation metrics for fine-tuning (pure functions on 1-D tensors; GLUE's choices per task).

Classification: accuracy, F1 (of class 1 for two classes, macro average otherwise) and
Matthews correlation (its multi-class generalization, equal to sklearn's). Regression:
Pearson and Spearman correlation (ties get average ranks).
"""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(pred: Tensor, target: Tensor) -> float:
    """pred, target: (N,) class ids."""
    _check(pred, target)
    return (pred == target).double().mean().item()


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    _check(pred, target)
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def f1_score(pred: Tensor, target: Tensor, num_classes: int = 2, average: str = "auto") -> float:
    """F1 of the positive class 1 (`average="binary"`, GLUE MRPC/QQP) or the mean F1 of all
    classes (`"macro"`); `"auto"` is binary for two classes, macro otherwise.

    A class never predicted and never present contributes F1 = 0 to the macro average.
    """
    if average not in ("auto", "binary", "macro"):
        raise ValueError(f"average must be auto, binary or macro, got {average!r}")
    cm = confusion_matrix(pred, target, num_classes).double()
    tp = cm.diag()
    denom = cm.sum(0) + cm.sum(1)  # 2 tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    binary = average == "binary" or (average == "auto" and num_classes == 2)
    return f1[1].item() if binary else f1.mean().item()


def matthews_corrcoef(pred: Tensor, target: Tensor, num_classes: int = 2) -> float:
    """Matthews correlation (GLUE CoLA), multi-class form; 0 when undefined (one class only)."""
    cm = confusion_matrix(pred, target, num_classes).double()
    n, correct = cm.sum(), cm.diag().sum()
    p, t = cm.sum(0), cm.sum(1)  # predicted / true counts per class
    cov = correct * n - (p * t).sum()
    den = torch.sqrt((n * n - (p * p).sum()) * (n * n - (t * t).sum()))
    return (cov / den).item() if den > 0 else 0.0


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of (N,) values; 0 when either is constant."""
    _check(x, y)
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    den = torch.sqrt((x * x).sum() * (y * y).sum())
    return ((x * y).sum() / den).item() if den > 0 else 0.0


def rankdata(x: Tensor) -> Tensor:
    """Ranks 1..N of (N,) values; tied values share their average rank (scipy's default)."""
    x = x.double()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    _, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1 if len(x) else 0, dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.bincount(inverse).double()
    return (sums / counts)[inverse]


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman rank correlation of (N,) values (Pearson of the average ranks)."""
    _check(x, y)
    return pearson(rankdata(x), rankdata(y))


def classification_metrics(pred: Tensor, target: Tensor, num_classes: int) -> dict[str, float]:
    return {
        "accuracy": accuracy(pred, target),
        "f1": f1_score(pred, target, num_classes),
        "mcc": matthews_corrcoef(pred, target, num_classes),
    }


def regression_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    p, s = pearson(pred, target), spearman(pred, target)
    return {"pearson": p, "spearman": s, "pearson_spearman": (p + s) / 2}


def _check(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two (N,) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) == 0:
        raise ValueError("cannot compute a metric on zero examples")
