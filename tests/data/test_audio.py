"""Audio loading, manifests, the dataset's failure handling, collation and length bucketing."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from data2vec.data.audio import (
    AudioDataset,
    AudioLoadError,
    LengthBucketSampler,
    audio_num_samples,
    change_speed,
    collate_audio,
    find_audio_files,
    load_audio,
    normalize_waveform,
    read_manifest,
    write_manifest,
)


def _tone(n: int, sr: int, freq: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def _write(path: Path, n: int, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(n, sr), sr)
    return path


@pytest.fixture
def messy_dir(tmp_path: Path) -> Path:
    """Two good files, one of random bytes and one of zero bytes, all named .wav."""
    _write(tmp_path / "a" / "good1.wav", 1600)
    _write(tmp_path / "b" / "c" / "good2.wav", 2400)
    (tmp_path / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "empty.wav").write_bytes(b"")
    return tmp_path


def test_find_audio_files_is_recursive_and_sorted(tmp_path: Path) -> None:
    _write(tmp_path / "z" / "deep" / "x.wav", 100)
    _write(tmp_path / "a.flac", 100)
    (tmp_path / "m").mkdir()
    sf.write(tmp_path / "m" / "b.ogg", _tone(2000, 16000), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    found = find_audio_files(tmp_path)
    relative = [p.relative_to(tmp_path).as_posix() for p in found]
    assert relative == ["a.flac", "m/b.ogg", "z/deep/x.wav"]


def test_manifest_round_trip(tmp_path: Path) -> None:
    entries = [("a/one.wav", 16000), ("two.flac", 0), ("b/c/three.wav", 123456)]
    write_manifest(tmp_path / "m.tsv", tmp_path / "audio", entries)
    root, read = read_manifest(tmp_path / "m.tsv")
    assert root == (tmp_path / "audio").resolve()
    assert [(e.path, e.num_samples) for e in read] == entries


def test_manifest_relative_root_resolves_against_manifest_folder(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_text("wav\nx.wav\t5\n")
    root, _ = read_manifest(tmp_path / "m.tsv")
    assert root == tmp_path / "wav"


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("x.wav 100", "2 tab-separated fields"),
        ("x.wav\tabc", "must be an integer"),
        ("x.wav\t-5", ">= 0"),
        ("\t100", "empty audio path"),
        ("x.wav\t100\textra", "found 3"),
    ],
)
def test_manifest_bad_line_names_file_and_line(tmp_path: Path, bad_line: str, problem: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(f"/root\nok.wav\t10\n{bad_line}\n")
    with pytest.raises(ValueError, match=r"bad\.tsv: line 3: .*") as info:
        read_manifest(path)
    assert problem in str(info.value)


def test_manifest_without_root_line(tmp_path: Path) -> None:
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(ValueError, match="empty.tsv: line 1"):
        read_manifest(tmp_path / "empty.tsv")


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left, right = _tone(800, 16000, 300.0), _tone(800, 16000, 700.0)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wav = load_audio(tmp_path / "st.wav")
    assert wav.dtype == np.float32 and wav.shape == (800,)
    np.testing.assert_allclose(wav, (left + right) / 2, atol=1e-6)


def test_resampling_22050_keeps_duration_and_pitch(tmp_path: Path) -> None:
    n = 22050 * 2 + 37
    sf.write(tmp_path / "t.wav", _tone(n, 22050, 440.0), 22050, subtype="PCM_16")
    wav = load_audio(tmp_path / "t.wav")
    expected = n * 16000 / 22050
    assert abs(len(wav) - expected) <= 1
    assert audio_num_samples(tmp_path / "t.wav") == len(wav)
    spectrum = np.abs(np.fft.rfft(wav))
    peak_hz = np.argmax(spectrum) * 16000 / len(wav)
    assert abs(peak_hz - 440.0) < 1.0


def test_load_audio_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "junk.wav").write_bytes(b"RIFF0000garbage")
    with pytest.raises(AudioLoadError, match="junk.wav"):
        load_audio(tmp_path / "junk.wav")


def test_normalize_waveform() -> None:
    silence = np.zeros(1000, dtype=np.float32)
    out = normalize_waveform(silence)
    assert np.isfinite(out).all() and not out.any()
    assert torch.isfinite(normalize_waveform(torch.zeros(3, 50))).all()
    x = np.random.default_rng(0).normal(3.0, 5.0, size=4000).astype(np.float32)
    y = normalize_waveform(x)
    assert y.dtype == np.float32 and abs(y.mean()) < 1e-5 and abs(y.std() - 1) < 1e-3
    t = torch.from_numpy(x)
    torch.testing.assert_close(torch.from_numpy(y), F.layer_norm(t, t.shape), atol=1e-5, rtol=1e-5)


def test_corrupt_and_empty_files_are_skipped_and_counted(messy_dir: Path) -> None:
    ds = AudioDataset.from_path(messy_dir, normalize=True)
    assert len(ds) == 4  # unreadable headers are kept so the failure is counted, not hidden
    with pytest.warns(RuntimeWarning) as record:
        items = [ds[i] for i in range(len(ds))]
    messages = " ".join(str(w.message) for w in record)
    assert "corrupt.wav" in messages and "empty.wav" in messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second pass must not warn again
        assert [ds[i] is None for i in range(len(ds))] == [it is None for it in items]
    batch = collate_audio(items)
    assert batch["num_skipped"] == 2
    assert batch["audio"].shape == (2, 2400)
    names = sorted(ds.paths[i].name for i in batch["index"].tolist())
    assert names == ["good1.wav", "good2.wav"]


def test_loader_run_goes_on_past_bad_files(messy_dir: Path) -> None:
    ds = AudioDataset.from_path(messy_dir)
    sampler = LengthBucketSampler(ds.sizes, max_samples_per_batch=3000, shuffle=True, seed=1)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_audio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        batches = list(loader)
    assert sum(b["num_skipped"] for b in batches) == 2
    assert sum(b["audio"].shape[0] for b in batches) == 2


def test_all_nan_file_is_skipped(tmp_path: Path) -> None:
    sf.write(tmp_path / "nan.wav", np.full(500, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    ds = AudioDataset.from_path(tmp_path)
    with pytest.warns(RuntimeWarning, match="nan.wav"):
        assert ds[0] is None


def test_collate_padding_mask() -> None:
    items = [{"audio": torch.ones(n), "index": i} for i, n in enumerate([3, 5, 1])] + [None]
    batch = collate_audio(items)
    assert batch["audio"].dtype == torch.float32 and batch["audio"].shape == (3, 5)
    assert batch["lengths"].tolist() == [3, 5, 1] and batch["index"].tolist() == [0, 1, 2]
    expected = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(batch["padding_mask"], expected)
    assert torch.equal(batch["audio"] != 0, ~expected)  # padding is zeros, content is not
    assert batch["num_skipped"] == 1
    empty = collate_audio([None, None])
    assert empty["audio"].shape == (0, 0) and empty["num_skipped"] == 2


def test_random_crop_is_reproducible(tmp_path: Path) -> None:
    ramp = np.arange(5000, dtype=np.float32) / 5000  # a sample's value tells its offset
    sf.write(tmp_path / "long.wav", ramp, 16000, subtype="FLOAT")
    ds = AudioDataset.from_path(tmp_path, max_sample_size=1000, seed=7)
    first = ds[0]["audio"]
    assert first.shape == (1000,) and torch.equal(first, ds[0]["audio"])
    starts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        starts.add(round(float(ds[0]["audio"][0]) * 5000))
    assert len(starts) > 1
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert torch.equal(ds.get_item(0, rng_a)["audio"], ds.get_item(0, rng_b)["audio"])


def test_speed_perturbation_changes_tempo_and_pitch_together(tmp_path: Path) -> None:
    tone = _tone(16000, 16000, 440.0)
    for factor in (0.9, 1.1):
        fast = change_speed(tone, factor)
        assert fast.dtype == np.float32 and abs(len(fast) - 16000 / factor) <= 1
        peak_hz = np.argmax(np.abs(np.fft.rfft(fast))) * 16000 / len(fast)
        assert abs(peak_hz - 440.0 * factor) < 2.0
    assert change_speed(tone, 1.0) is tone
    sf.write(tmp_path / "t.wav", tone, 16000, subtype="FLOAT")
    ds = AudioDataset.from_path(tmp_path, speeds=(0.9, 1.1), seed=3)
    lengths = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        first = ds[0]["audio"]
        assert torch.equal(first, ds[0]["audio"])  # one speed per (seed, epoch, item)
        lengths.add(len(first))
    assert lengths == {len(change_speed(tone, 0.9)), len(change_speed(tone, 1.1))}
    with pytest.raises(ValueError, match="speeds must lie in"):
        AudioDataset.from_path(tmp_path, speeds=(0.0, 1.0))


def test_min_sample_size_drops_and_counts(tmp_path: Path) -> None:
    for name, n in [("short.wav", 100), ("mid.wav", 2000), ("long.wav", 4000)]:
        _write(tmp_path / "wav" / name, n)
    from_dir = AudioDataset.from_path(tmp_path / "wav", min_sample_size=1000)
    assert from_dir.num_too_short == 1 and sorted(from_dir.sizes.tolist()) == [2000, 4000]
    write_manifest(tmp_path / "m.tsv", tmp_path / "wav", [("short.wav", 100), ("long.wav", 4000)])
    from_tsv = AudioDataset.from_path(tmp_path / "m.tsv", min_sample_size=1000)
    assert from_tsv.num_too_short == 1 and [p.name for p in from_tsv.paths] == ["long.wav"]
    assert from_tsv[0]["audio"].shape == (4000,)


def test_sizes_from_headers_are_16k_lengths(tmp_path: Path) -> None:
    _write(tmp_path / "a.wav", 22050, sr=22050)
    _write(tmp_path / "b.wav", 8000, sr=8000)
    ds = AudioDataset.from_path(tmp_path)
    assert ds.sizes.tolist() == [len(ds[i]["audio"]) for i in range(len(ds))] == [16000, 16000]


def _check_batches(sampler: LengthBucketSampler, sizes: np.ndarray, cap: int, crop: int) -> None:
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(sizes)))
    for b in batches:
        padded = len(b) * max(min(sizes[i], crop) for i in b)
        assert padded <= cap or len(b) == 1


def test_bucket_sampler_respects_cap_and_covers_each_item_once() -> None:
    sizes = np.random.default_rng(0).integers(0, 50_000, size=500)
    sizes[:3] = 200_000  # longer than the cap even after cropping: a batch of its own each
    sampler = LengthBucketSampler(sizes, 60_000, shuffle=True, seed=5, max_sample_size=80_000)
    assert sampler.num_oversized == 3
    for epoch in range(3):
        sampler.set_epoch(epoch)
        _check_batches(sampler, sizes, 60_000, 80_000)
    sampler.set_epoch(1)
    again = LengthBucketSampler(sizes, 60_000, True, 5, 1, max_sample_size=80_000)
    assert list(sampler) == list(again)
    sampler.set_epoch(2)
    assert list(sampler) != list(again)
    plain = LengthBucketSampler(sizes, 60_000, shuffle=False, max_sample_size=80_000)
    assert list(plain) == list(plain) and len(plain) == len(sampler)


def test_bucket_sampler_splits_batches_across_replicas() -> None:
    sizes = np.random.default_rng(1).integers(1000, 20_000, size=101)
    ranks = [LengthBucketSampler(sizes, 40_000, seed=2, num_replicas=3, rank=r) for r in range(3)]
    assert len({len(s) for s in ranks}) == 1 and len(list(ranks[0])) == len(ranks[0])
    covered = {i for s in ranks for b in s for i in b}
    assert covered == set(range(len(sizes)))
