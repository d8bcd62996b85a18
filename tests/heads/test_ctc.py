import pytest
import torch

from data2vec.heads.classification import MeanPoolClassifier, classification_loss, masked_mean
from data2vec.heads.ctc import (
    CTCHead, Vocabulary, blank_plateau_hint, ctc_loss, edit_distance, error_rates, greedy_decode, letters_from_words,
    words_from_letters,
)


def test_letters_round_trip_and_vocabulary():
    tokens = letters_from_words("HI  THERE")
    assert tokens == list("HI|THERE|")
    assert words_from_letters(tokens) == "HI THERE"
    vocab = Vocabulary.from_transcripts([tokens, list("YO|")])
    assert vocab.symbols[0] == "<blank>" and len(vocab) == 1 + len(set("HITEROY|"))
    assert vocab.decode(vocab.encode(tokens)) == "HI THERE"
    with pytest.raises(ValueError, match="train.ltr line 3: letters \\['Z'\\]"):
        vocab.encode(["Z"], "train.ltr line 3")


def test_greedy_decode_merges_repeats_drops_blanks_and_padding():
    V = 4
    path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 3, 3]])
    logits = torch.nn.functional.one_hot(path, V).float()
    pad = torch.zeros(1, 9, dtype=torch.bool)
    assert greedy_decode(logits) == [[1, 1, 2, 3]]
    pad[0, 7:] = True
    assert greedy_decode(logits, pad) == [[1, 1, 2]]


def test_edit_distance_and_error_rates():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1
    r = error_rates(["THE CAT SAT", "ONE TWO"], ["THE CAT SAT", "ONE TOO"])
    assert r["wer"] == pytest.approx(100 * 1 / 5)
    assert r["cer"] == pytest.approx(100 * 1 / (11 + 7))
    assert r["length"] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        error_rates(["A"], [])


def test_blank_plateau_hint_fires_when_transcripts_stay_mostly_empty():
    refs = ["THE CAT SAT", "ONE TWO"]
    empty = error_rates(["", "O"], refs)["length"]
    spelled = error_rates(["THE CAT", "ONE TO"], refs)["length"]
    assert empty == pytest.approx(100 * 1 / 18)
    assert blank_plateau_hint([empty, empty]) is None  # a healthy run's first evaluations look like this
    assert "blanks" in blank_plateau_hint([spelled, empty, empty, empty])
    assert blank_plateau_hint([empty, empty, empty, spelled]) is None


def test_ctc_loss_trains_the_head_and_ignores_impossible_targets():
    torch.manual_seed(0)
    head = CTCHead(8, 5)
    x = torch.randn(2, 12, 8)
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1, 8:] = True
    targets = [[1, 2, 3], [4, 4]]
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = ctc_loss(head(x), pad, targets)
        opt.zero_grad(), loss.backward(), opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert greedy_decode(head(x), pad) == targets
    assert ctc_loss(head(x[:, :1]), None, [[1, 2, 3], [4]]).isfinite()  # too long: zero, not inf


def test_mean_pool_classifier_excludes_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    pad = torch.tensor([[False, False, True]])
    assert masked_mean(x, pad).item() == 2.0
    clf = MeanPoolClassifier(1, 3)
    logits = clf(x, pad)
    assert logits.shape == (1, 3)
    assert torch.allclose(logits, clf(x[:, :2]))
    assert classification_loss(logits, torch.tensor([2])).isfinite()
    with pytest.raises(ValueError, match="at least 2 classes"):
        MeanPoolClassifier(4, 1)
