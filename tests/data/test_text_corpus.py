"""Text corpus: reading, memmap encoding, token blocks, collation, labeled files, fortunes."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from data2vec.data.text_corpus import (
    FORTUNES_DIR,
    TokenBlockDataset,
    block_slices,
    collate_tokens,
    encode_corpus,
    fortunes_classification,
    fortunes_corpus,
    read_documents,
    read_labeled,
    read_token_classification,
)
from data2vec.data.tokenizer import TextTokenizer, train_bpe


class CharTokenizer:
    """One id per character (a=4, b=5, ...): block boundaries can be read off the text."""

    bos, pad, eos, unk, mask = 0, 1, 2, 3, 99

    def __init__(self, vocab_size: int = 100):
        self.vocab_size = vocab_size

    def encode_batch(self, texts):
        return [[4 + (ord(ch) - ord("a")) % 90 for ch in t] for t in texts]


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def test_read_documents_modes_and_messy_files(tmp_path):
    write(tmp_path / "a.txt", "first doc line 1\nline 2   \n\n  \n\nsecond doc\n\n\n")
    write(tmp_path / "b.txt", "")
    write(tmp_path / "sub/c.txt", b"caf\xe9 \xff bytes\r\nsame doc\r\n")
    write(tmp_path / ".hidden", "never read")
    docs = list(read_documents(tmp_path))
    assert docs == ["first doc line 1\nline 2", "second doc", "caf\ufffd \ufffd bytes\nsame doc"]
    lines = list(read_documents([tmp_path / "a.txt", tmp_path / "sub"], doc_mode="line"))
    assert lines == ["first doc line 1", "line 2", "second doc", "caf\ufffd \ufffd bytes", "same doc"]
    with pytest.raises(FileNotFoundError):
        list(read_documents(tmp_path / "missing"))
    with pytest.raises(ValueError, match="doc_mode"):
        list(read_documents(tmp_path, doc_mode="paragraph"))


def test_encode_corpus_matches_in_memory(tmp_path):
    docs = [f"document {i}: " + "the cat sat on the mat. " * (i % 7 + 1) + "end" for i in range(30)]
    write(tmp_path / "text/a.txt", "\n\n".join(docs[:20]))
    write(tmp_path / "text/b.txt", "\n\n".join(docs[20:]) + "\n\n\n")
    train_bpe([tmp_path / "text"], vocab_size=300, out_path=tmp_path / "tok")
    tok = TextTokenizer.load(tmp_path / "tok")
    meta = encode_corpus(tmp_path / "text", tok, tmp_path / "out/corpus", batch_docs=7)
    expected = [i for d in docs for i in tok.encode(d) + [tok.eos]]
    tokens = np.load(tmp_path / "out/corpus.tokens.npy", mmap_mode="r")
    offsets = np.load(tmp_path / "out/corpus.docs.npy")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    assert tokens.tolist() == expected
    assert offsets[0] == 0 and offsets[-1] == len(expected) and len(offsets) == len(docs) + 1
    assert all(tokens[e - 1] == tok.eos for e in offsets[1:])
    assert meta["num_docs"] == 30 and meta["num_tokens"] == len(expected) and meta["mask"] == tok.mask
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_encode_corpus_dtype_and_empty(tmp_path):
    write(tmp_path / "t.txt", "abc\n\nde\n")
    encode_corpus(tmp_path / "t.txt", CharTokenizer(vocab_size=70000), tmp_path / "big")
    tokens = np.load(tmp_path / "big.tokens.npy")
    assert tokens.dtype == np.int32 and tokens.tolist() == [4, 5, 6, 2, 7, 8, 2]
    write(tmp_path / "empty.txt", "\n \n\n")
    with pytest.raises(ValueError, match="no documents"):
        encode_corpus(tmp_path / "empty.txt", CharTokenizer(), tmp_path / "none")


def test_two_processes_encoding_one_corpus_at_once_both_finish(tmp_path, monkeypatch):
    # Two trainings that share the cache start on the same corpus: the second finishes while
    # the first is still writing. Each must keep its own temporary files.
    import data2vec.data.text_corpus as tc

    write(tmp_path / "t.txt", "abc\n\nde\n")
    write_tokens, other_ran = tc._write_tokens, []

    def first_writer(*args, **kwargs):
        offsets = write_tokens(*args, **kwargs)
        if not other_ran:
            other_ran.append(True)
            with monkeypatch.context() as m:
                m.setattr(tc.os, "getpid", lambda: 999_999)  # the other process
                encode_corpus(tmp_path / "t.txt", CharTokenizer(), tmp_path / "c")
        return offsets

    monkeypatch.setattr(tc, "_write_tokens", first_writer)
    meta = encode_corpus(tmp_path / "t.txt", CharTokenizer(), tmp_path / "c")
    assert other_ran and meta["num_tokens"] == 7
    assert np.load(tmp_path / "c.tokens.npy").tolist() == [4, 5, 6, 2, 7, 8, 2]
    assert not list(tmp_path.glob("*.tmp"))


def test_block_slices_complete_doc():
    # Document lengths 4, 2, 14, 3, 2 (each incl. </s>), blocks of at most 5 tokens.
    docs = np.array([0, 4, 6, 20, 23, 25])
    starts, ends = block_slices(docs, 5, "complete_doc")
    assert list(zip(starts.tolist(), ends.tolist())) == [(0, 4), (4, 6), (6, 11), (11, 16), (16, 20), (20, 25)]
    starts, ends = block_slices(docs, 5, "none")
    assert list(zip(starts.tolist(), ends.tolist())) == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 25)]
    with pytest.raises(ValueError, match="break_mode"):
        block_slices(docs, 5, "eos")


@pytest.fixture
def char_corpus(tmp_path):
    write(tmp_path / "c.txt", "aaa\n\nb\n\ncccccccccccccc\n\ndd\n\ne\n")
    encode_corpus(tmp_path / "c.txt", CharTokenizer(), tmp_path / "c")
    return tmp_path / "c"


def test_token_blocks_none(char_corpus):
    ds = TokenBlockDataset(char_corpus, block_size=6, break_mode="none")
    stream = np.load(f"{char_corpus}.tokens.npy").tolist()
    items = [ds[i].tolist() for i in range(len(ds))]
    assert all(it[0] == 0 and len(it) <= 6 for it in items)
    assert [len(it) for it in items[:-1]] == [6] * (len(items) - 1)
    assert [t for it in items for t in it[1:]] == stream  # contiguous, crossing documents
    assert ds.sizes.tolist() == [len(it) for it in items]


def test_token_blocks_complete_doc(char_corpus):
    ds = TokenBlockDataset(char_corpus, block_size=6, break_mode="complete_doc")
    a, b, c, d, e, eos = 4, 5, 6, 7, 8, 2
    # Documents of 4, 2, 15, 3 and 2 tokens; at most 5 content tokens after <s>.
    assert [ds[i].tolist() for i in range(len(ds))] == [
        [0, a, a, a, eos],  # "b</s>" would not fit: the block ends at a document boundary
        [0, b, eos],
        [0] + [c] * 5, [0] + [c] * 5, [0] + [c] * 4 + [eos],  # a too-long document is cut
        [0, d, d, eos, e, eos],  # whole documents packed together
    ]
    state = pickle.dumps(ds)
    ds.tokens()
    assert len(pickle.dumps(ds)) == len(state)  # the memmap is not pickled into workers
    assert pickle.loads(state)[5].tolist() == [0, d, d, eos, e, eos]


def test_collate_tokens():
    batch = collate_tokens([torch.tensor([0, 5, 6, 2]), [0, 7]], pad_id=1, pad_to_multiple=8)
    assert batch["tokens"].shape == (2, 8) and batch["tokens"].dtype == torch.long
    assert batch["tokens"][1].tolist() == [0, 7] + [1] * 6
    assert batch["padding_mask"].dtype == torch.bool
    assert batch["padding_mask"].sum(1).tolist() == [4, 6] and not batch["padding_mask"][0, :4].any()


def test_read_labeled_tsv_csv_jsonl(tmp_path):
    tsv = write(tmp_path / "train.tsv", 'idx\tsentence1\tsentence2\tlabel\n0\tA "quoted\tB\t1\n\n1\tC\tD\t0\n')
    data = read_labeled(tsv, ["sentence1", "sentence2"], "label")
    assert data.texts == [('A "quoted', "B"), ("C", "D")] and data.labels == [1, 0] and data.label_names == ["0", "1"]
    csv_file = write(tmp_path / "d.csv", 'text,score\n"hello, world",3.5\nbye,-1\n')
    reg = read_labeled(csv_file, "text", "score", task="regression")
    assert reg.texts == [("hello, world",), ("bye",)] and reg.labels == [3.5, -1.0] and reg.label_names is None
    jl = write(tmp_path / "d.jsonl", '{"t": "x", "y": "pos"}\n{"t": "z", "y": "neg"}\n')
    cls = read_labeled(jl, "t", "y", labels=["neg", "pos"])
    assert cls.labels == [1, 0] and len(cls) == 2
    nohead = write(tmp_path / "cola.tsv", "src\t1\t\tgood sentence\nsrc\t0\t*\tbad sentence\n")
    cola = read_labeled(nohead, 3, 1, header=False)
    assert cola.texts[1] == ("bad sentence",) and cola.labels == [1, 0]


def test_read_labeled_bad_rows(tmp_path):
    tsv = write(tmp_path / "bad.tsv", "sentence\tlabel\ngood\t1\nno label here\n")
    with pytest.raises(ValueError, match=r"bad.tsv, line 3: missing column 'label'"):
        read_labeled(tsv, "sentence", "label")
    tsv = write(tmp_path / "lab.tsv", "sentence\tlabel\ngood\tpos\nugly\tmaybe\n")
    with pytest.raises(ValueError, match=r"lab.tsv, line 3: label 'maybe' is not one of"):
        read_labeled(tsv, "sentence", "label", labels=["neg", "pos"])
    tsv = write(tmp_path / "empty.tsv", "sentence\tlabel\n  \t1\n")
    with pytest.raises(ValueError, match="line 2: empty text"):
        read_labeled(tsv, "sentence", "label")
    tsv = write(tmp_path / "reg.tsv", "s\tscore\na\t1.0\nb\thigh\n")
    with pytest.raises(ValueError, match="line 3: regression target 'high'"):
        read_labeled(tsv, "s", "score", task="regression")
    with pytest.raises(ValueError, match="line 1: header has no column 'text'"):
        read_labeled(tsv, "text", "score")
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        assert read_labeled(tsv, "s", "score", task="regression", skip_bad_rows=True).labels == [1.0]


def test_read_token_classification(tmp_path):
    f = write(tmp_path / "ner.txt", "-DOCSTART- -X- O O\n\nEU\tB-ORG\nrejects\tO\n\n\nPeter NNP B-NP B-PER\n")
    data = read_token_classification(f)
    assert data.words == [["EU", "rejects"], ["Peter"]] and data.label_names == ["B-ORG", "B-PER", "O"]
    assert data.labels == [[0, 2], [1]]
    write(f, "EU\tB-ORG\nlonely\n")
    with pytest.raises(ValueError, match="ner.txt, line 2"):
        read_token_classification(f)


def test_fortunes_files_parsing(tmp_path):
    write(tmp_path / "jokes", "first quote\n\t-- someone\n%\n%\nsecond\n%\nthird\n")
    write(tmp_path / "jokes.dat", b"\x00\x00\x00\x02binary")
    (tmp_path / "jokes.u8").symlink_to("jokes")
    write(tmp_path / "off/rot13", "Guvf vf bssrafvir\n")
    assert fortunes_corpus(tmp_path) == ["first quote\n\t-- someone", "second", "third"]
    with pytest.raises(FileNotFoundError, match="fortunes"):
        fortunes_corpus(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not in"):
        fortunes_corpus(tmp_path, categories=["computers"])


@pytest.mark.skipif(not Path(FORTUNES_DIR, "computers").is_file(),
                    reason="Debian package 'fortunes' is not installed (no /usr/share/games/fortunes/computers)")
def test_fortunes_classification_balanced_and_deterministic():
    task = fortunes_classification(per_class=300, seed=1)
    assert [len(task[s]) for s in ("train", "valid", "test")] == [960, 120, 120]
    for split in task.values():
        counts = np.bincount(split.labels, minlength=4)
        assert (counts == counts[0]).all() and split.label_names == ["computers", "politics", "science", "songs-poems"]
    texts = {s: {t for (t,) in task[s].texts} for s in task}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["valid"]
    again = fortunes_classification(per_class=300, seed=1)
    assert again["test"].texts == task["test"].texts and again["train"].labels == task["train"].labels
    assert fortunes_classification(per_class=300, seed=2)["test"].texts != task["test"].texts
