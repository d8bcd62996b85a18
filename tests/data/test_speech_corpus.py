"""The espeak-ng corpus: readable audio, aligned transcripts, held-out speakers, determinism."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from data2vec.data.audio import AudioDataset, load_audio, read_manifest
from data2vec.data.speech_corpus import (
    SENTENCES,
    SPLITS,
    discover_variants,
    discover_voices,
    main,
    plan_corpus,
    read_speakers,
    synthesize_corpus,
    words_to_letters,
)

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, num_utterances=10, seed=3)
    return out


def _speakers(corpus: Path) -> list[dict[str, str]]:
    lines = (corpus / "speakers.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_corpus_audio_is_readable_and_lengths_match(corpus: Path) -> None:
    total = 0
    for split in SPLITS:
        root, entries = read_manifest(corpus / f"{split}.tsv")
        assert entries, f"{split} is empty"
        total += len(entries)
        for entry in entries:
            wav = load_audio(root / entry.path)
            assert len(wav) == entry.num_samples > 1600  # at least 0.1 s of speech
            assert np.sqrt(np.mean(wav**2)) > 0.01
    assert total == 10 == len(list((corpus / "wav").glob("*.wav")))
    ds = AudioDataset.from_path(corpus / "train.tsv", normalize=True)
    assert ds[0]["audio"].shape[0] == ds.sizes[0]


def test_transcripts_are_aligned_with_manifests(corpus: Path) -> None:
    for split in SPLITS:
        _, entries = read_manifest(corpus / f"{split}.tsv")
        words = (corpus / f"{split}.wrd").read_text().splitlines()
        letters = (corpus / f"{split}.ltr").read_text().splitlines()
        assert len(entries) == len(words) == len(letters)
        for w, ltr in zip(words, letters):
            assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", w)
            assert ltr == words_to_letters(w)
    rows = _speakers(corpus)
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in (corpus / "wav").glob("*.wav"))


def test_valid_and_test_speakers_are_held_out(corpus: Path) -> None:
    rows = _speakers(corpus)
    by_split = {s: [r for r in rows if r["split"] == s] for s in SPLITS}
    for held_out in ("valid", "test"):
        for key in ("voice", "variant"):
            train_values = {r[key] for r in by_split["train"]}
            assert not train_values & {r[key] for r in by_split[held_out]}, (held_out, key)


def test_plan_is_deterministic_and_varied() -> None:
    voices = ["en-us", "en-gb", "en-029", "en-gb-scotland"]
    variants = [f"m{i}" for i in range(1, 8)]
    a = plan_corpus(200, 11, voices, variants)
    assert a == plan_corpus(200, 11, voices, variants)
    assert a != plan_corpus(200, 12, voices, variants)
    assert {u.kind for u in a} == {"digits", "word", "sentence"}
    assert len({u.speed for u in a}) > 10 and len({u.pitch for u in a}) > 10
    digits = [u.words for u in a if u.kind == "digits"]
    assert all(set(w.split()) <= {"ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN",
                                  "EIGHT", "NINE"} for w in digits)
    counts = {s: sum(u.split == s for u in a) for s in SPLITS}
    assert counts == {"train": 160, "valid": 20, "test": 20}


def test_a_larger_corpus_of_the_same_seed_keeps_the_held_out_speakers() -> None:
    # A bigger unlabeled corpus for pretraining (same seed, larger --num) must not train on the
    # voices a smaller corpus holds out for validation and test.
    voices = ["en-us", "en-gb", "en-029", "en-gb-scotland", "en-us-nyc"]
    variants = [f"m{i}" for i in range(1, 8)] + ["f1", "f2", "f3"]
    small, large = plan_corpus(100, 5, voices, variants), plan_corpus(600, 5, voices, variants)
    for held_out in ("valid", "test"):
        for key in ("voice", "variant"):
            assert not ({getattr(u, key) for u in large if u.split == "train"}
                        & {getattr(u, key) for u in small if u.split == held_out}), (held_out, key)


def test_plan_with_few_voices_still_holds_out_variants() -> None:
    plan = plan_corpus(30, 0, ["en-us"], ["f1", "f2", "m1", "m2", "m3"])
    train = {u.variant for u in plan if u.split == "train"}
    assert not train & {u.variant for u in plan if u.split != "train"}


def test_sentence_list_and_letters() -> None:
    assert len(set(SENTENCES)) >= 100
    assert words_to_letters("HI THERE") == "H I | T H E R E |"


@needs_espeak
def test_discovery_lists_english_voices_and_variants() -> None:
    voices = discover_voices()
    assert "en-us" in voices and all(v.startswith("en") for v in voices)
    assert len(discover_variants()) >= 10
    assert discover_voices("/nonexistent/espeak-ng")  # falls back to the built-in list


@needs_espeak
def test_cli_entry_point_and_refusal_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["--out", str(tmp_path), "--num", "4", "--seed", "1"]) == 0
    assert "train:" in capsys.readouterr().out
    with pytest.raises(FileExistsError):
        main(["--out", str(tmp_path), "--num", "4"])
    assert main(["--out", str(tmp_path), "--num", "3", "--force"]) == 0
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 3


def test_read_speakers_maps_files_to_a_column_and_names_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "speakers.tsv").write_text("file\tsplit\tvoice\tkind\na.wav\ttrain\ten-us\tword\nb.wav\ttest\ten-gb\tdigits\n")
    assert read_speakers(tmp_path, "voice") == {"a.wav": "en-us", "b.wav": "en-gb"}
    assert read_speakers(tmp_path, "kind") == {"a.wav": "word", "b.wav": "digits"}
    with pytest.raises(ValueError, match=r"speakers.tsv: needs the columns 'file' and 'pitch'"):
        read_speakers(tmp_path, "pitch")


def test_kinds_restrict_the_texts_and_keep_the_speakers() -> None:
    voices = ["en-us", "en-gb", "en-029", "en-gb-scotland"]
    variants = [f"m{i}" for i in range(1, 8)]
    mixed = plan_corpus(120, 3, voices, variants)
    assert mixed == plan_corpus(120, 3, voices, variants, kinds=("sentence", "digits", "word"))
    digits = plan_corpus(120, 3, voices, variants, kinds=["digits"])
    assert {u.kind for u in digits} == {"digits"}
    vocabulary = {w for u in digits for w in u.words.split()}
    assert vocabulary == {"ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"}
    for split in SPLITS:  # the held-out voices do not depend on the kinds
        assert {u.voice for u in digits if u.split == split} <= {u.voice for u in mixed if u.split == split}
    assert {u.kind for u in plan_corpus(60, 3, voices, variants, kinds=["word", "sentence"])} == {"word", "sentence"}
    with pytest.raises(ValueError, match=r"kinds: got \['digit'\], choose one or more of digits, word, sentence"):
        plan_corpus(10, 3, voices, variants, kinds=["digit"])
    with pytest.raises(ValueError, match=r"kinds: got \[\]"):
        plan_corpus(10, 3, voices, variants, kinds=[])
