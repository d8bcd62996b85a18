import pytest
import torch

from data2vec.eval.metrics import (
    accuracy, classification_metrics, confusion_matrix, f1_score, matthews_corrcoef, pearson, rankdata,
    regression_metrics, spearman,
)

T = torch.tensor


def test_binary_metrics_by_hand():
    pred, target = T([0, 1, 1, 0, 1]), T([0, 1, 0, 0, 1])
    assert accuracy(pred, target) == pytest.approx(0.8)
    assert confusion_matrix(pred, target, 2).tolist() == [[2, 1], [0, 2]]
    # tp=2, fp=1, fn=0: F1 = 2*2 / (2*2 + 1 + 0)
    assert f1_score(pred, target) == pytest.approx(0.8)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 4 / sqrt(3*2*3*2)
    assert matthews_corrcoef(pred, target) == pytest.approx(4 / 6)


def test_multiclass_macro_f1_and_mcc_by_hand():
    pred, target = T([0, 1, 2, 2]), T([0, 1, 1, 2])
    assert f1_score(pred, target, 3) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert f1_score(pred, target, 3, average="binary") == pytest.approx(2 / 3)
    # c=3 correct of s=4; p=(1,1,2), t=(1,2,1): (3*4 - 5) / sqrt((16 - 6) * (16 - 6))
    assert matthews_corrcoef(pred, target, 3) == pytest.approx(0.7)
    assert set(classification_metrics(pred, target, 3)) == {"accuracy", "f1", "mcc"}


def test_degenerate_cases():
    assert matthews_corrcoef(T([1, 1, 1]), T([1, 1, 1])) == 0.0  # undefined -> 0
    assert pearson(T([1.0, 1.0, 1.0]), T([1.0, 2.0, 3.0])) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        accuracy(T([1, 2]), T([1]))
    with pytest.raises(ValueError, match="zero examples"):
        accuracy(T([], dtype=torch.long), T([], dtype=torch.long))
    with pytest.raises(ValueError, match="average"):
        f1_score(T([1]), T([1]), average="micro")


def test_correlations_by_hand():
    x, y = T([1.0, 2.0, 3.0, 4.0]), T([2.0, 4.0, 5.0, 9.0])
    assert pearson(x, y) == pytest.approx(11 / 130**0.5)
    assert rankdata(T([1.0, 2.0, 2.0, 3.0])).tolist() == [1.0, 2.5, 2.5, 4.0]
    # ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5)
    assert spearman(T([1.0, 2.0, 2.0, 3.0]), T([10.0, 20.0, 30.0, 40.0])) == pytest.approx(4.5 / 22.5**0.5)
    assert spearman(x, x.exp()) == pytest.approx(1.0)
    r = regression_metrics(x, y)
    assert r["pearson_spearman"] == pytest.approx((r["pearson"] + r["spearman"]) / 2)
