"""Raw-waveform speech data: file discovery, fairseq-style manifests, decoding and a dataset.

Everything is 16 kHz mono float32 once loaded: ``soundfile`` decodes, multichannel audio is
mixed down by averaging, and ``soxr`` resamples other rates. Lengths (``AudioDataset.sizes``,
manifest ``num_samples``) are always counted in 16 kHz samples, so batching never needs to
decode a file. Batching helpers live in :mod:`data2vec.data.audio_batching` and are re-exported.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence, TypeVar

import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from data2vec.data.audio_batching import LengthBucketSampler, collate_audio

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioLoadError",
    "ManifestEntry",
    "find_audio_files",
    "read_manifest",
    "write_manifest",
    "resampled_length",
    "audio_num_samples",
    "load_audio",
    "normalize_waveform",
    "check_speeds",
    "change_speed",
    "AudioDataset",
    "collate_audio",
    "LengthBucketSampler",
]

logger = logging.getLogger(__name__)

TARGET_SAMPLE_RATE = 16000

# Extensions libsndfile decodes without extra parameters; RAW and the MATLAB/HTK formats are left
# out because their extensions are either parameter-dependent or commonly used for other data.
_EXTENSION_FORMATS = {
    "wav": "WAV", "wave": "WAV", "flac": "FLAC", "ogg": "OGG", "oga": "OGG", "opus": "OGG",
    "mp3": "MP3", "aiff": "AIFF", "aif": "AIFF", "aifc": "AIFF", "au": "AU", "snd": "AU",
    "caf": "CAF", "w64": "W64", "rf64": "RF64", "voc": "VOC", "sph": "NIST", "nist": "NIST",
}


class AudioLoadError(RuntimeError):
    """A file could not be decoded; the message names the file."""


class ManifestEntry(NamedTuple):
    """One manifest line: a path relative to the manifest root and its length in 16 kHz samples."""

    path: str
    num_samples: int


def audio_extensions() -> frozenset[str]:
    """Lower-case extensions (without dot) that the installed libsndfile can decode."""
    available = set(sf.available_formats())
    return frozenset(ext for ext, fmt in _EXTENSION_FORMATS.items() if fmt in available)


def find_audio_files(root: str | os.PathLike) -> list[Path]:
    """All decodable audio files under ``root`` at any depth, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"audio folder {root} does not exist or is not a directory")
    exts = audio_extensions()
    found = []
    # os.walk with followlinks=False avoids looping forever on symlinked directory cycles.
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if Path(name).suffix[1:].lower() in exts:
                found.append(Path(dirpath) / name)
    return sorted(found)


def read_manifest(path: str | os.PathLike) -> tuple[Path, list[ManifestEntry]]:
    """Read a fairseq-style tsv manifest: root folder, then ``rel_path<TAB>num_samples`` lines.

    A relative root is resolved against the manifest's own folder. Blank lines are ignored.
    Raises ``ValueError`` naming the file, the line number and the problem for any malformed line.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); is this a manifest?") from None
    if not lines or not lines[0].strip():
        raise ValueError(f"{path}: line 1: expected the root directory, found an empty line")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = path.parent / root
    entries = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(
                f"{path}: line {lineno}: expected 2 tab-separated fields "
                f"(path, num_samples), found {len(fields)}: {line!r}"
            )
        rel, count = fields[0].strip(), fields[1].strip()
        if not rel:
            raise ValueError(f"{path}: line {lineno}: empty audio path")
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"{path}: line {lineno}: audio path {rel!r} leaves the root directory")
        try:
            num = int(count)
        except ValueError:
            raise ValueError(
                f"{path}: line {lineno}: num_samples must be an integer, found {count!r}"
            ) from None
        if num < 0:
            raise ValueError(f"{path}: line {lineno}: num_samples must be >= 0, found {num}")
        entries.append(ManifestEntry(rel, num))
    return root, entries


def write_manifest(
    path: str | os.PathLike,
    root: str | os.PathLike,
    entries: Iterable[tuple[str | os.PathLike, int]],
) -> None:
    """Write a manifest; entry paths may be absolute (under ``root``) or relative to ``root``."""
    root = Path(root).resolve()
    lines = [str(root)]
    for rel, num in entries:
        rel_path = Path(rel)
        if rel_path.is_absolute():
            rel_path = rel_path.resolve().relative_to(root)
        text = rel_path.as_posix()
        if "\t" in text or "\n" in text:
            raise ValueError(f"audio path {text!r} contains a tab or newline")
        if int(num) < 0:
            raise ValueError(f"num_samples for {text!r} must be >= 0, got {num}")
        lines.append(f"{text}\t{int(num)}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def resampled_length(frames: int, sample_rate: int, target_sr: int = TARGET_SAMPLE_RATE) -> int:
    """Length after resampling ``frames`` samples, rounded half up exactly as soxr does."""
    return (frames * target_sr * 2 + sample_rate) // (2 * sample_rate)


def audio_num_samples(path: str | os.PathLike, target_sr: int = TARGET_SAMPLE_RATE) -> int:
    """Length of a file in ``target_sr`` samples from its header alone (no decoding)."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError)
        raise AudioLoadError(f"cannot read audio header of {path}: {exc}") from exc
    return resampled_length(info.frames, info.samplerate, target_sr)


def load_audio(path: str | os.PathLike, target_sr: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Decode a file to float32 mono at ``target_sr``: shape (T,).

    Channels are averaged; other sample rates are resampled with soxr (high quality).
    Raises ``AudioLoadError`` naming the file when it cannot be decoded.
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioLoadError(f"cannot decode audio file {path}: {exc}") from exc
    wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if sr != target_sr and wav.size > 0:
        wav = soxr.resample(wav, sr, target_sr, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def normalize_waveform(x: ArrayT, eps: float = 1e-5) -> ArrayT:
    """Zero mean, unit variance over the last axis: (T,) or unpadded (B, T); same type back.

    Identical to fairseq's ``F.layer_norm(wav, wav.shape)`` for a 1-D input. The ``eps`` inside the
    square root keeps silent (constant) input finite: it maps to zeros instead of NaN.
    """
    if x.shape[-1] == 0:
        return x
    if isinstance(x, np.ndarray):
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=-1, keepdims=True)
        var = x64.var(axis=-1, keepdims=True)
        out_dtype = x.dtype if x.dtype.kind == "f" else np.float32
        return ((x64 - mean) / np.sqrt(var + eps)).astype(out_dtype)
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def check_speeds(speeds: Sequence[float], field: str = "speeds") -> tuple[float, ...]:
    """``speeds`` as floats, or a ValueError naming ``field`` when one is outside [0.5, 2.0]."""
    if any(not 0.5 <= f <= 2.0 for f in speeds):
        raise ValueError(f"{field}={','.join(map(str, speeds))}: speeds must lie in [0.5, 2.0]")
    return tuple(float(f) for f in speeds)


def change_speed(wav: np.ndarray, factor: float, sample_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """(T,) -> (about T / factor,): the waveform played ``factor`` times as fast, tempo and pitch
    together (Kaldi's speed perturbation: resampling as if it had been recorded at
    ``factor * sample_rate``)."""
    if factor == 1.0:
        return wav
    return soxr.resample(wav, factor * sample_rate, sample_rate).astype(np.float32, copy=False)


class AudioDataset(Dataset):
    """Utterances from files; an item is ``{"audio": (T,) float32, "index": int}`` or ``None``.

    ``sizes[i]`` is item ``i``'s full length in 16 kHz samples (0 when its header is unreadable).
    With ``max_sample_size`` longer items are randomly cropped; the offset comes from
    ``numpy.random.default_rng((seed, epoch, index))`` unless a generator is passed to
    :meth:`get_item`, so crops are reproducible and differ between epochs. With ``speeds``
    each item is first played at one of those speeds, drawn from the same generator
    (:func:`change_speed`).
    Files shorter than ``min_sample_size`` are dropped at construction (``num_too_short``).
    Unreadable, empty or all-NaN files give ``None`` with one warning per file.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        sizes: Sequence[int] | None = None,
        *,
        root: str | os.PathLike | None = None,
        max_sample_size: int | None = None,
        min_sample_size: int = 0,
        normalize: bool = False,
        seed: int = 0,
        target_sr: int = TARGET_SAMPLE_RATE,
        speeds: Sequence[float] = (),
    ) -> None:
        if max_sample_size is not None and max_sample_size <= 0:
            raise ValueError(f"max_sample_size must be positive, got {max_sample_size}")
        self.speeds = check_speeds(speeds)
        self.root = Path(root) if root is not None else None
        paths = [self.root / f if self.root is not None else Path(f) for f in files]
        if sizes is None:
            lengths = [self._header_length(p, target_sr) for p in paths]
        else:
            if len(sizes) != len(paths):
                raise ValueError(f"got {len(paths)} files but {len(sizes)} sizes")
            lengths = [int(s) for s in sizes]
        keep = [i for i, n in enumerate(lengths) if n is None or n >= min_sample_size]
        self.num_too_short = len(paths) - len(keep)
        if self.num_too_short:
            logger.warning(
                "dropped %d of %d audio files shorter than min_sample_size=%d samples",
                self.num_too_short, len(paths), min_sample_size,
            )
        self.paths: list[Path] = [paths[i] for i in keep]
        self.sizes = np.array([lengths[i] or 0 for i in keep], dtype=np.int64)
        self.max_sample_size = max_sample_size
        self.min_sample_size = min_sample_size
        self.normalize = normalize
        self.seed = seed
        self.epoch = 0
        self.target_sr = target_sr
        self._warned: set[Path] = set()

    @staticmethod
    def _header_length(path: Path, target_sr: int) -> int | None:
        # Unknown length (unreadable header) keeps the file so the failure surfaces, counted,
        # at load time instead of silently shrinking the data set.
        try:
            return audio_num_samples(path, target_sr)
        except AudioLoadError:
            return None

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs) -> "AudioDataset":
        """Build from a folder (searched recursively) or a ``.tsv`` manifest.

        Keyword arguments go to ``__init__``.
        """
        path = Path(path)
        if path.is_dir():
            files = find_audio_files(path)
            if not files:
                raise ValueError(f"no audio files found under {path}")
            return cls(files, **kwargs)
        if path.suffix.lower() == ".tsv" and path.is_file():
            root, entries = read_manifest(path)
            if not root.is_dir():
                raise ValueError(f"{path}: line 1: root directory {root} does not exist")
            files, sizes = [e.path for e in entries], [e.num_samples for e in entries]
            return cls(files, sizes, root=root, **kwargs)
        raise ValueError(f"{path} is neither a directory nor a .tsv manifest")

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Change the crop offsets drawn for the next pass."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict | None:
        return self.get_item(index)

    def get_item(self, index: int, rng: np.random.Generator | None = None) -> dict | None:
        """Load, validate, crop and optionally normalize item ``index``; ``None`` if unusable."""
        path = self.paths[index]
        try:
            wav = load_audio(path, self.target_sr)
        except AudioLoadError as exc:
            return self._skip(path, str(exc))
        if wav.size == 0:
            return self._skip(path, f"audio file {path} is empty")
        if wav.size < self.min_sample_size:  # the manifest's length was wrong
            return self._skip(path, f"audio file {path} has {wav.size} samples, fewer than min_sample_size="
                                    f"{self.min_sample_size}")
        finite = np.isfinite(wav)
        if not finite.any():
            return self._skip(path, f"audio file {path} contains only NaN/inf samples")
        if not finite.all():
            wav = np.where(finite, wav, np.float32(0.0))
        if rng is None and (self.speeds or self.max_sample_size is not None):
            rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.speeds:
            wav = change_speed(wav, self.speeds[int(rng.integers(len(self.speeds)))], self.target_sr)
        if self.max_sample_size is not None and wav.size > self.max_sample_size:
            start = int(rng.integers(0, wav.size - self.max_sample_size + 1))
            wav = wav[start : start + self.max_sample_size]
        if self.normalize:
            wav = normalize_waveform(wav)
        return {"audio": torch.from_numpy(np.ascontiguousarray(wav)), "index": int(index)}

    def _skip(self, path: Path, reason: str) -> None:
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"skipping unusable audio: {reason}", RuntimeWarning, stacklevel=3)
        return None
