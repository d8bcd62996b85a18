"""Text pretraining data: files -> cached tokenizer and corpus -> blocks; a few steps lower the loss."""

import pytest
import torch

from data2vec.config import ConfigError, apply_overrides, check_choices
from data2vec.data.text_pretrain import TextDataConfig, build_text_data, prepare_text_corpus, text_tokenizer
from data2vec.data.tokenizer import train_bpe
from data2vec.presets import get_preset
from data2vec.train.logging import read_metrics
from data2vec.train.pretrain import pretrain

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jovial kings".split()


@pytest.fixture
def corpus(tmp_path):
    g = torch.Generator().manual_seed(0)
    docs = []
    for _ in range(120):
        idx = torch.randint(0, len(WORDS), (int(torch.randint(8, 40, (1,), generator=g)),), generator=g)
        docs.append(" ".join(WORDS[i] for i in idx.tolist()))
    path = tmp_path / "corpus" / "a.txt"
    path.parent.mkdir()
    path.write_text("\n\n".join(docs) + "\n")
    (tmp_path / "corpus" / "empty.txt").write_text("")
    return path.parent


def _cfg(tmp_path, corpus, *extra):
    return apply_overrides(get_preset("data2vec2_text_tiny"), [
        f"data.path={corpus}", "data.doc_mode=blank_line", f"data.cache_dir={tmp_path / 'cache'}",
        "model.input.vocab_size=300", "data.block_size=32", *extra])


def test_corpus_is_cached_and_blocks_are_batched(tmp_path, corpus):
    cfg = _cfg(tmp_path, corpus)
    tok, prefix = prepare_text_corpus(cfg.data, 300)
    tok2, prefix2 = prepare_text_corpus(cfg.data, 300)  # second call reuses the cache
    assert prefix == prefix2 and tok.vocab_size <= 300 and tok.pad == 1
    data = build_text_data(cfg.data, cfg.model.input, cfg.train)
    batch = next(iter(data.batches(0, 0)))
    assert batch["tokens"].shape == (16, 32) and batch["padding_mask"].shape == (16, 32)
    assert (batch["tokens"][:, 0] == tok.bos).all()
    assert text_tokenizer(cfg.data, cfg.model.input).vocab_size == tok.vocab_size


def test_fortune_format_splits_on_percent_lines(tmp_path):
    (tmp_path / "quotes").write_text("first quote\n\nsecond line of it\n%\nanother one\n%\n")
    (tmp_path / "quotes.dat").write_bytes(b"\x00\x01binary")
    data = TextDataConfig(path=str(tmp_path), doc_mode="percent", cache_dir=str(tmp_path / "c"))
    _, prefix = prepare_text_corpus(data, 280)
    docs = open(prefix.rsplit("/", 1)[0] + "/documents.txt").read().split("\n\n")
    assert docs[:2] == ["first quote\nsecond line of it", "another one"]


def test_config_errors_name_the_field(tmp_path, corpus):
    with pytest.raises(ValueError, match="data.path"):
        prepare_text_corpus(TextDataConfig(path=""), 300)
    with pytest.raises(ConfigError, match="data.doc_mode='pages': expected one of 'blank_line', 'line', 'percent'"):
        check_choices(TextDataConfig(path=str(corpus), doc_mode="pages"), "data")
    cfg = _cfg(tmp_path, corpus, "data.block_size=128")
    with pytest.raises(ValueError, match="max_positions"):
        build_text_data(cfg.data, cfg.model.input, cfg.train)
    train_bpe(corpus, 400, tmp_path / "big")
    cfg = _cfg(tmp_path, corpus, f"data.tokenizer={tmp_path / 'big'}")
    with pytest.raises(ValueError, match="model.input.vocab_size"):
        build_text_data(cfg.data, cfg.model.input, cfg.train)


def test_a_few_pretraining_steps_lower_the_loss(tmp_path, corpus):
    cfg = _cfg(tmp_path, corpus, "train.max_steps=40", "train.log_every=5", "data.break_mode=complete_doc")
    pretrain(cfg, tmp_path / "run", progress=False)
    rows = [r["loss_regression"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    # Single-step losses are noisy at this size: compare the first two logged steps with the last three.
    first, last = sum(rows[:2]) / 2, sum(rows[-3:]) / 3
    assert last < 0.95 * first, rows


def test_padding_id_must_match_the_tokenizer(tmp_path, corpus):
    cfg = _cfg(tmp_path, corpus, "model.input.pad_id=0")
    with pytest.raises(ValueError, match="model.input.pad_id"):
        build_text_data(cfg.data, cfg.model.input, cfg.train)
