"""Odd and corrupted audio: odd rates, channels, bit depths, lengths, NaN, clipping, broken files.
Every file is loaded as finite 16 kHz mono, or skipped and counted."""

import random
import warnings

import numpy as np
import soundfile as sf
import torch

from data2vec.data.audio import AudioDataset
from data2vec.data.audio_pretrain import collate_pretrain

MIN, MAX = 400, 16_000  # the conv stack's receptive field; a crop length


def _odd_file(path, rng: random.Random) -> None:
    fmt, subtype = rng.choice([("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"), ("WAV", "PCM_24"),
                               ("FLAC", "PCM_16"), ("WAV", "DOUBLE")])
    rate = rng.choice([8000, 11025, 16000, 22050, 44100, 96000])
    channels = rng.choice([1, 1, 2, 6])
    frames = rng.choice([0, 1, 10, 399, 400, 2000, 40_000])
    content = rng.choice(["noise", "silence", "nan", "clipped", "partly_nan", "inf"])
    x = np.random.default_rng(rng.randrange(2**32)).standard_normal((frames, channels)) * 0.1
    if content == "silence":
        x[:] = 0
    elif content == "nan":
        x[:] = np.nan
    elif content == "partly_nan" and frames:
        x[: frames // 2] = np.nan
    elif content == "clipped":
        x *= 50
    elif content == "inf" and frames:
        x[0] = np.inf
    out = path.with_suffix("." + fmt.lower())
    try:
        sf.write(str(out), x, rate, subtype=subtype, format=fmt)
    except (AssertionError, RuntimeError, sf.LibsndfileError):  # libsndfile refuses e.g. NaN in FLAC
        out.unlink(missing_ok=True)


def test_odd_and_corrupt_audio_is_loaded_clean_or_skipped_and_counted(tmp_path, fuzz, corrupt):
    f = fuzz("audio")
    rng = random.Random(0)
    for i in range(200):
        _odd_file(tmp_path / f"odd{i:03d}", rng)
    for i in range(8):
        base = tmp_path / f"base{i}.wav"
        sf.write(str(base), np.random.default_rng(i).standard_normal(3000) * 0.1, rng.choice([16000, 44100]))
        for k, (name, bad) in enumerate(corrupt(base.read_bytes(), i)):
            (tmp_path / f"bad{i}_{k}_{name}.wav").write_bytes(bad)
        base.unlink()
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    assert len(files) >= 250
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = AudioDataset(files, min_sample_size=MIN, max_sample_size=MAX, normalize=True)
        for _ in range(ds.num_too_short):
            f.record("skipped")  # too short by their headers: dropped with a count
        items = []
        for i in range(len(ds)):
            with f.timed() as t:
                item = ds[i]
            items.append(item)
            if item is None:
                f.record("skipped", t.seconds)
                continue
            wav = item["audio"]
            assert wav.dtype == torch.float32 and wav.ndim == 1 and MIN <= wav.numel() <= MAX
            assert torch.isfinite(wav).all()
            f.record("accepted", t.seconds)
    batch = collate_pretrain(items)
    assert batch["num_skipped"] == sum(it is None for it in items) > 0


def test_a_manifest_that_overstates_lengths_cannot_sneak_in_short_audio(tmp_path, fuzz):
    f = fuzz("audio")
    for i, n in enumerate([10, 399, 1000, 2000]):
        sf.write(str(tmp_path / f"{i}.wav"), np.random.default_rng(i).standard_normal(n) * 0.1, 16000)
    ds = AudioDataset([f"{i}.wav" for i in range(4)], [32_000] * 4, root=tmp_path, min_sample_size=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = [ds[i] for i in range(4)]
    assert [g is None for g in got] == [True, True, True, False]
    for g in got:
        f.record("skipped" if g is None else "accepted")
