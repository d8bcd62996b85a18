"""Bad manifests, label files, text corpora and TSV/CSV/JSONL/CoNLL rows."""

import random
import re
import warnings

import numpy as np
import pytest
import soundfile as sf

from data2vec.data.audio import AudioDataset
from data2vec.data.audio_labeled import read_transcripts
from data2vec.data.text_corpus import read_documents
from data2vec.data.text_labeled import read_labeled, read_token_classification

JUNK = ["", " ", "\t", "\t\t", "x.wav", "x.wav\t", "\t100", "x.wav\t-1", "x.wav\tabc", "x.wav\t1e3", "x.wav\t100\t7",
        "/etc/passwd\t100", "../outside.wav\t100", "a/../../b.wav\t100", "missing.wav\t16000", "ok.wav\t99999999999",
        "ok.wav\t0", "ok.wav\t 2000 ", "\x00\x01\x02", "ok.wav 2000", "ok.wav\t2000"]


def _manifest_lines(rng: random.Random, root: str) -> str:
    head = rng.choice([root, root, root, "", "   ", "/no/such/root", "relative/missing", root + "\t3"])
    rows = [rng.choice(JUNK) for _ in range(rng.randint(0, 6))]
    return "\n".join([head, *rows]) + rng.choice(["\n", "", "\n\n"])


def test_bad_manifests_are_one_line_errors_naming_the_manifest(tmp_path, fuzz):
    f = fuzz("manifests")
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(str(audio / "ok.wav"), np.random.default_rng(0).standard_normal(2000) * 0.1, 16000)
    rng = random.Random(0)
    for i in range(240):
        path = tmp_path / f"m{i}.tsv"
        text = _manifest_lines(rng, str(audio)).encode()
        if i % 8 == 7:
            text = text + rng.choice([b"\xff\xfe\xfa", b"\xc3\x28", bytes(rng.randbytes(40))])  # not UTF-8
        path.write_bytes(text)
        with f.timed() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = AudioDataset.from_path(path, min_sample_size=400)
            except ValueError as e:
                f.error(e, str(path))
                continue
            items = [ds[j] for j in range(len(ds))]
        assert all(it is None or it["audio"].numel() >= 400 for it in items)
        f.record("accepted", t.seconds)


def test_label_files_with_the_wrong_line_count_name_the_file(tmp_path, fuzz):
    f = fuzz("manifests")
    manifest = tmp_path / "train.tsv"
    manifest.write_text(f"{tmp_path}\na.wav\t100\nb.wav\t100\n")
    for n in [0, 1, 3, 10]:
        manifest.with_suffix(".ltr").write_text("A B |\n" * n)
        with pytest.raises(ValueError, match=r"train.ltr: \d+ lines but the manifest") as e:
            read_transcripts(manifest, "ltr", 2)
        f.error(e.value, "train.ltr")


def _rows(rng: random.Random, fmt: str) -> list[str]:
    good = {"tsv": "sentence\tlabel", "csv": "sentence,label", "jsonl": '{"sentence": "a b c", "label": "1"}'}
    bad = {
        "tsv": ["only one field", "\t1", "text\t", "text\t1\textra", "\x00\x01\tbin", "text\tlabel\t\t"],
        "csv": ['"unclosed,1', ",1", "text,", "a,b,c,d", "\x00,\x01"],
        "jsonl": ["{", "[1, 2]", '"string"', '{"sentence": null, "label": "1"}', '{"label": "1"}',
                  '{"sentence": "", "label": "0"}', '{"sentence": "x"}', "null", '{"sentence": 5, "label": 1}'],
    }
    rows = []
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.5:
            rows.append(rng.choice(bad[fmt]))
        elif fmt == "jsonl":
            rows.append(good["jsonl"].replace('"1"', f'"{rng.randint(0, 2)}"'))
        else:
            sep = "\t" if fmt == "tsv" else ","
            rows.append(f"words {rng.randint(0, 99)}{sep}{rng.randint(0, 2)}")
    return rows


def test_malformed_labeled_rows_are_errors_or_skipped_and_counted(tmp_path, fuzz):
    f = fuzz("text rows")
    rng = random.Random(1)
    for i in range(150):
        fmt = rng.choice(["tsv", "csv", "jsonl"])
        path = tmp_path / f"d{i}.{fmt}"
        header = [] if fmt == "jsonl" else [("sentence\tlabel" if fmt == "tsv" else "sentence,label")]
        rows = _rows(rng, fmt)
        path.write_text("\n".join(header + rows) + "\n", encoding="utf-8")
        try:
            read_labeled(path, "sentence", "label")
            f.record("accepted")
        except ValueError as e:
            f.error(e, str(path))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                data = read_labeled(path, "sentence", "label", skip_bad_rows=True)
            except ValueError as e:  # invalid JSON or no usable row at all
                f.error(e, str(path))
                continue
        skipped = sum(int(m.group(1)) for w in caught if (m := re.search(r"skipped (\d+) bad row", str(w.message))))
        lines = len([r for r in rows if r.strip()])
        # An unclosed CSV quote runs on into the next lines: one row, as csv reads it.
        assert len(data) + skipped == lines if fmt != "csv" else len(data) + skipped <= lines
        for _ in range(skipped):
            f.record("skipped")


def test_malformed_conll_rows_are_errors_naming_the_line(tmp_path, fuzz):
    f = fuzz("text rows")
    rng = random.Random(2)
    lines = ["EU\tB-ORG", "rejects\tO", "-DOCSTART- -X- O O", "", "word", "\tO", "word\t", "a b c d", "\x00\x01",
             "x\ty\tz", "   "]
    for i in range(100):
        path = tmp_path / f"c{i}.conll"
        path.write_text("\n".join(rng.choice(lines) for _ in range(rng.randint(0, 8))) + "\n")
        try:
            read_token_classification(path)
            f.record("accepted")
        except ValueError as e:
            f.error(e, str(path))


def test_empty_binary_and_non_utf8_text_files_never_stop_a_corpus(tmp_path, fuzz):
    f = fuzz("text files")
    rng = random.Random(3)
    for i in range(120):
        kind = rng.choice(["empty", "binary", "latin1", "nul", "long_line", "crlf", "bom"])
        data = {"empty": b"", "binary": rng.randbytes(rng.randint(1, 2000)),
                "latin1": "caf\xe9 na\xefve\n\nr\xe9sum\xe9\n".encode("latin-1"), "nul": b"\x00" * 100,
                "long_line": b"x" * 100_000, "crlf": b"one\r\ntwo\r\n\r\nthree\r\n",
                "bom": "\ufeffhello\n\nworld\n".encode("utf-8")}[kind]
        path = tmp_path / "corpus" / f"{i:03d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        with f.timed() as t:
            docs = list(read_documents(path))
        assert all(isinstance(d, str) and d.strip() for d in docs)
        f.record("accepted", t.seconds)
    assert list(read_documents(tmp_path / "corpus"))  # the whole folder reads too
