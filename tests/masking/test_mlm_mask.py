import math

import pytest
import torch

from data2vec.masking.text import bert_corrupt, mlm_span_mask

MASK_ID = 50


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _runs(row: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of True as (start, end) with end exclusive."""
    runs, start = [], None
    for i, v in enumerate(row + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _expected_span_fraction(n: int, p: float, span: int) -> float:
    """E[selected fraction]: starts are k distinct of n positions, k = int(p * n / span + u)."""
    x = p * n / span
    k_lo, frac_hi = math.floor(x), x - math.floor(x)
    total = 0.0
    for k, w in ((k_lo, 1 - frac_hi), (k_lo + 1, frac_hi)):
        # Position r is missed iff none of its min(r + 1, span) possible starts is drawn.
        missed = sum(math.comb(n - min(r + 1, span), k) / math.comb(n, k) for r in range(n))
        total += w * (1 - missed / n)
    return total


def test_span_4_at_35_percent_like_data2vec_text():
    m = mlm_span_mask(300, 512, 0.35, 4, None, _gen(0))
    assert m.shape == (300, 512) and m.dtype == torch.bool
    frac = m.float().mean().item()
    expected = _expected_span_fraction(512, 0.35, 4)  # ~0.306: overlapping spans lose a bit
    assert 0.29 < expected < 0.32
    assert abs(frac - expected) < 0.005 and 0.25 < frac < 0.36
    for row in m[:50].tolist():
        for s, e in _runs(row):
            assert e - s >= 4 or e == 512  # only the row-end clip shortens a span


def test_span_1_is_bert_15_percent_with_probabilistic_rounding():
    m = mlm_span_mask(400, 100, 0.15, 1, None, _gen(1))
    assert set(m.sum(1).tolist()) == {15}  # int(15 + u) = 15
    m = mlm_span_mask(2000, 90, 0.15, 1, None, _gen(1))  # 13.5: 13 or 14, half each
    counts = m.sum(1)
    assert set(counts.tolist()) == {13, 14}
    assert abs(counts.float().mean().item() - 13.5) < 0.05
    assert abs(mlm_span_mask(200, 512, 0.15, 1, None, _gen(2)).float().mean().item() - 0.15) < 0.002


def test_never_on_padding_and_spans_clip_at_the_real_end():
    pad = torch.zeros(4, 40, dtype=torch.bool)
    pad[0, 25:] = True  # right padding: 25 real tokens
    pad[1, :10] = True  # left padding: 30 real tokens
    pad[3, :] = True  # an all-padding row
    hits = torch.zeros(4, 40)
    for seed in range(300):
        m = mlm_span_mask(4, 40, 0.35, 4, pad, _gen(seed))
        assert not (m & pad).any()
        real = m[0, :25].tolist()
        for s, e in _runs(real):
            assert e - s >= 4 or e == 25
        hits += m.float()
    assert (hits[0, :25] > 0).all() and (hits[1, 10:] > 0).all() and (hits[2] > 0).all()
    # Only one start reaches the first real token (four reach an inner one): covered less often.
    assert hits[0, 0] < 0.5 * hits[0, 12] and hits[1, 10] < 0.5 * hits[1, 25]


def test_span_mask_reproducible_and_validated():
    a = mlm_span_mask(3, 64, 0.35, 4, None, _gen(7))
    assert torch.equal(a, mlm_span_mask(3, 64, 0.35, 4, None, _gen(7)))
    assert not torch.equal(a, mlm_span_mask(3, 64, 0.35, 4, None, _gen(8)))
    with pytest.raises(ValueError, match="mask_prob"):
        mlm_span_mask(1, 10, 1.5)
    with pytest.raises(ValueError, match="span"):
        mlm_span_mask(1, 10, 0.3, 0)


def test_80_10_10_proportions_and_random_token_range():
    # Originals are a special id (2), never drawn at random, so every outcome is visible.
    tokens = torch.full((200, 500), 2, dtype=torch.long)
    selected = torch.rand(200, 500, generator=_gen(0)) < 0.5
    out, mask_pos = bert_corrupt(tokens, selected, MASK_ID, 0.1, 0.1, generator=_gen(1))
    n = selected.sum().item()
    masked = (out == MASK_ID) & selected
    randomised = (out != MASK_ID) & (out != 2)
    unchanged = (out == 2) & selected
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    assert abs(randomised.sum().item() / n - 0.1) < 0.01
    assert abs(unchanged.sum().item() / n - 0.1) < 0.01
    assert not (randomised & ~selected).any()
    rand_vals = out[randomised]
    assert rand_vals.min() >= 4 and rand_vals.max() < MASK_ID
    assert len(rand_vals.unique()) == MASK_ID - 4  # every allowed id is drawn
    assert torch.equal(mask_pos, masked) and out.dtype == torch.long


def test_unselected_tokens_unchanged_and_all_mask_config():
    tokens = torch.randint(4, MASK_ID, (8, 64), generator=_gen(0))
    selected = mlm_span_mask(8, 64, 0.35, 4, None, _gen(1))
    out, mask_pos = bert_corrupt(tokens, selected, MASK_ID, generator=_gen(2))  # 0 / 0: data2vec 1.0
    assert torch.equal(out[~selected], tokens[~selected])
    assert (out[selected] == MASK_ID).all() and torch.equal(mask_pos, selected)
    out, mask_pos = bert_corrupt(tokens, selected, MASK_ID, 0.1, 0.1, generator=_gen(2))
    assert torch.equal(out[~selected], tokens[~selected])
    assert torch.equal(mask_pos, selected & (out == MASK_ID))


def test_explicit_random_range_reproducibility_and_validation():
    tokens = torch.zeros(50, 50, dtype=torch.long)
    selected = torch.ones(50, 50, dtype=torch.bool)
    a, _ = bert_corrupt(tokens, selected, 3, 1.0, 0.0, 10, 20, _gen(4))
    assert a.min() >= 10 and a.max() < 20
    b, _ = bert_corrupt(tokens, selected, 3, 1.0, 0.0, 10, 20, _gen(4))
    c, _ = bert_corrupt(tokens, selected, 3, 1.0, 0.0, 10, 20, _gen(5))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="probabilities"):
        bert_corrupt(tokens, selected, 3, 0.6, 0.6)
    with pytest.raises(ValueError, match="range"):
        bert_corrupt(tokens, selected, 3, 0.1, 0.0)  # [4, 3) is empty
