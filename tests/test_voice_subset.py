"""benchmarks/voice_subset.py: subsets of a speech-corpus split chosen by voice keep their labels aligned."""

from pathlib import Path

import pytest


def _corpus(root: Path, voices: list[str]) -> Path:
    (root / "wav").mkdir(parents=True)
    names = [f"utt{i:03d}.wav" for i in range(len(voices))]
    (root / "train.tsv").write_text(f"{root / 'wav'}\n" + "".join(f"{n}\t{1000 + i}\n" for i, n in enumerate(names)))
    (root / "train.wrd").write_text("".join(f"WORD{i}\n" for i in range(len(voices))))
    (root / "speakers.tsv").write_text("file\tsplit\tvoice\n" + "".join(f"{n}\ttrain\t{v}\n" for n, v in zip(names, voices)))
    return root


def test_drop_num_and_take_keep_the_split_order_and_the_labels(tmp_path, load_benchmark):
    bench = load_benchmark("voice_subset")
    voices = ["gb", "us", "gb", "ca", "us", "gb", "us", "ca"]
    corpus = _corpus(tmp_path / "c", voices)
    assert bench.choose(voices, {"us"}, 0, {}) == [0, 2, 3, 5, 7]
    assert bench.choose(voices, {"us"}, 3, {}) == [0, 2, 3]
    assert bench.choose(voices, set(), 4, {"us": 3}) == [0, 1, 4, 6]
    bench.main([str(corpus), "train", "--num", "4", "--take", "us=3", "--out", str(tmp_path / "o")])
    lines = (tmp_path / "o" / "train.tsv").read_text().splitlines()
    assert lines[0] == str(corpus / "wav")
    assert [l.split("\t")[0] for l in lines[1:]] == ["utt000.wav", "utt001.wav", "utt004.wav", "utt006.wav"]
    assert (tmp_path / "o" / "train.wrd").read_text().split() == ["WORD0", "WORD1", "WORD4", "WORD6"]
    assert not (tmp_path / "o" / "train.ltr").exists()


def test_impossible_requests_name_the_problem(load_benchmark):
    bench = load_benchmark("voice_subset")
    with pytest.raises(SystemExit, match="1 utterances of ca, fewer than 2"):
        bench.choose(["gb", "ca"], set(), 0, {"ca": 2})
    with pytest.raises(SystemExit, match="cannot be filled"):
        bench.choose(["gb", "ca"], {"ca"}, 2, {})
