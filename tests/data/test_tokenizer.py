"""Tokenizers: trained byte-level BPE, and fairseq GPT-2 BPE + dict.txt on tiny fake files."""

import argparse
import json

import pytest

from data2vec.data.tokenizer import TextTokenizer, add_arguments, run, train_bpe

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Data2vec predicts contextualized latent representations of the input.",
    "  leading spaces, trailing spaces  ",
    "naïve café — 日本語のテキスト, emoji 🙂 and tabs\tinside",
    "line one\nline two\n\nafter a blank line",
    "Numbers 12345 and punctuation!? (yes) [no] {maybe}",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpe")
    corpus = d / "corpus.txt"
    lines = [f"{t} sample {i} of the corpus" for i in range(40) for t in TEXTS]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    train_bpe([corpus], vocab_size=400, out_path=d / "tok", min_frequency=2)
    return d / "tok"


def test_bpe_special_ids_and_round_trip(trained):
    assert (trained / "tokenizer.json").is_file()
    tok = TextTokenizer.load(trained)
    assert (tok.bos, tok.pad, tok.eos, tok.unk) == (0, 1, 2, 3)
    assert tok.vocab_size == 400 and tok.mask == tok.vocab_size - 1
    assert [tok.id_to_token(i) for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    for text in TEXTS + ["unseen words: zyxwvut qqq", " x"]:
        ids = tok.encode(text)
        assert ids and all(4 <= i < tok.mask for i in ids)  # no specials, no <unk> in byte-level BPE
        assert tok.decode(ids) == text
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]
    assert len(tok.encode("the quick brown fox")) < len("the quick brown fox")  # merges learned


def test_bpe_literal_special_text_stays_text(trained):
    tok = TextTokenizer.load(trained / "tokenizer.json")
    ids = tok.encode("a <s> b <mask> c")
    assert not set(ids) & {tok.bos, tok.eos, tok.mask}
    assert tok.decode(ids) == "a <s> b <mask> c"
    # bos/pad/eos are dropped on decode, <mask> is kept visible.
    assert tok.decode([tok.bos] + tok.encode("hi") + [tok.mask, tok.eos, tok.pad]) == "hi<mask>"


def test_bpe_save_load_and_messy_input(tmp_path, trained):
    tok = TextTokenizer.load(trained)
    again = TextTokenizer.load(tok.save(tmp_path / "copy"))
    assert again.encode(TEXTS[3]) == tok.encode(TEXTS[3]) and again.vocab_size == tok.vocab_size
    folder = tmp_path / "messy"
    folder.mkdir()
    (folder / "bad.txt").write_bytes(b"caf\xe9 \xff\xfe broken bytes\n" * 20 + b"\n\n")
    (folder / "empty.txt").write_bytes(b"")
    train_bpe([folder], vocab_size=300, out_path=tmp_path / "t2.json")
    messy = TextTokenizer.load(tmp_path / "t2.json")
    # Too few pairs for 300 tokens: the vocabulary is smaller but <mask> is still last.
    assert messy.mask == messy.vocab_size - 1 < 300
    assert messy.decode(messy.encode("caf\ufffd broken")) == "caf\ufffd broken"
    with pytest.raises(ValueError, match="too small"):
        train_bpe([folder], vocab_size=100, out_path=tmp_path / "t3")


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character table, in byte order (ids 0..255 of encoder.json)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


@pytest.fixture
def gpt2_dir(tmp_path):
    """Fake GPT-2 files: 256 byte tokens, 5 merges, <|endoftext|>; dict.txt lists some ids."""
    chars = _bytes_to_unicode()
    encoder = {c: i for i, c in enumerate(chars)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "c"), ("a", "t")]
    for a, b in merges:
        encoder[a + b] = len(encoder)  # Ġt=256 he=257 Ġthe=258 Ġc=259 at=260
    encoder["<|endoftext|>"] = len(encoder)
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    t, c = encoder["t"], encoder["c"]
    # GPT-2 id 257 ("he") and most byte ids are deliberately absent -> <unk>.
    lines = ["258 1000", "260 900", "259 800", f"{t} 700", f"{c} 600", "madeupword0000 0", "madeupword0001 0"]
    (tmp_path / "dict.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_fairseq_dict_mapping(gpt2_dir):
    tok = TextTokenizer.load(gpt2_dir)
    assert tok.kind == "fairseq_gpt2"
    assert (tok.bos, tok.pad, tok.eos, tok.unk) == (0, 1, 2, 3)
    # 4 specials + 7 dict lines, then <mask> appended by the masked_lm task.
    assert tok.mask == 11 and tok.vocab_size == 12
    assert [tok.id_to_token(i) for i in (4, 5, 9, 11)] == ["258", "260", "madeupword0000", "<mask>"]
    assert tok.encode(" the cat") == [4, 6, 5]  # Ġthe=258 -> 4, Ġc=259 -> 6, at=260 -> 5
    assert tok.encode("the") == [7, 3]  # t -> 7, "he" (257) is not in dict.txt -> <unk>
    assert tok.encode("tc") == [7, 8]
    assert tok.decode([0, 4, 6, 5, 2, 1]) == " the cat"
    assert tok.decode([7, 3, 11, 9]) == "t<unk><mask>madeupword0000"
    copy = TextTokenizer.load(tok.save(gpt2_dir / "saved"))
    assert copy.encode(" the cat tc") == tok.encode(" the cat tc") and copy.mask == 11


def test_fairseq_dict_overwrite_and_errors(gpt2_dir):
    d = gpt2_dir / "dict.txt"
    d.write_text("258 10\n<mask> 5\n258 3 #fairseq:overwrite\n")
    tok = TextTokenizer.load(gpt2_dir)
    # fairseq: an overwrite appends a new id that the token now encodes to; an existing
    # <mask> is reused rather than appended.
    assert tok.vocab_size == 7 and tok.mask == 5 and tok.encode(" the") == [6]
    d.write_text("258 10\n259 4\n258 3\n")
    with pytest.raises(ValueError, match="line 3: duplicate token '258'"):
        TextTokenizer.load(gpt2_dir)
    d.write_text("258\n")
    with pytest.raises(ValueError, match="line 1"):
        TextTokenizer.load(gpt2_dir)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        TextTokenizer.load(gpt2_dir / "saved_nowhere")


def test_cli_train(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS * 10))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["train", "--files", str(corpus), "--vocab-size", "300", "--out", str(tmp_path / "o")])
    assert run(args) == 0
    assert "vocab_size=300" in capsys.readouterr().out
    assert TextTokenizer.load(tmp_path / "o").mask == 299
