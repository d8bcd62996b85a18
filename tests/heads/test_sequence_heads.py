import torch

from data2vec.heads.sequence import FirstTokenHead
from data2vec.heads.token import IGNORE, TokenHead, word_token_labels


def test_first_token_head_reads_only_the_first_token():
    head = FirstTokenHead(8, 3).eval()
    x = torch.randn(2, 5, 8)
    y = head(x)
    assert y.shape == (2, 3)
    x2 = x.clone()
    x2[:, 1:] = torch.randn(2, 4, 8)
    torch.testing.assert_close(head(x2), y)
    torch.testing.assert_close(y, head.out_proj(torch.tanh(head.dense(x[:, 0]))))
    assert set(dict(head.named_parameters())) == {"dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias"}


def test_token_head_and_first_subtoken_labels():
    assert TokenHead(8, 4)(torch.randn(2, 5, 8)).shape == (2, 5, 4)
    # <s>, word0 = 2 pieces, word1 = 1 piece, word2 = 3 pieces
    assert word_token_labels([2, 1, 3], [5, 6, 7]) == [IGNORE, 5, IGNORE, 6, 7, IGNORE, IGNORE]
