"""Small on-disk data sets in the formats real pretraining reads, for the speed benchmarks.

- JPEG folders: Fashion-MNIST images upscaled to RGB JPEGs of ImageNet-like size, so decoding
  and RandomResizedCrop cost what they cost on real photos.
- WAV folders at 22.05 kHz or 44.1 kHz (16-bit PCM, noise plus a sweep): the loader must
  resample them to 16 kHz. Throughput does not depend on the content.
- Text: the fortunes corpus, as the text presets use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from data2vec.data.image import open_images
from data2vec.data.text_fortunes import FORTUNES_DIR
from data2vec.presets.image import FASHION_MNIST_TRAIN


def jpeg_folder(out: Path, n: int = 256, size: int = 400) -> Path:
    """`n` size x size RGB JPEGs (quality 90) made from Fashion-MNIST images; reused if present."""
    out.mkdir(parents=True, exist_ok=True)
    if len(list(out.glob("*.jpg"))) >= n:
        return out
    images = open_images(FASHION_MNIST_TRAIN, 1, n)
    for i in range(n):
        gray = images.load(i)[0].numpy()  # (28, 28) uint8
        rgb = np.stack([gray, 255 - gray, np.roll(gray, i % 7, axis=1)], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).resize((size, size), Image.BICUBIC).save(out / f"{i:05d}.jpg", quality=90)
    return out


def wav_folder(out: Path, n: int, seconds: float, rate: int) -> Path:
    """`n` mono 16-bit WAVs of `seconds` at `rate` Hz; reused if present."""
    out.mkdir(parents=True, exist_ok=True)
    if len(list(out.glob("*.wav"))) >= n:
        return out
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(n):
        sweep = np.sin(2 * np.pi * (200 + 50 * i + 300 * t) * t)
        wav = 0.3 * sweep + 0.05 * rng.standard_normal(t.shape)
        sf.write(out / f"{i:04d}.wav", wav.astype(np.float32), rate, subtype="PCM_16")
    return out


def text_path() -> str:
    """The fortunes corpus folder (Debian `fortunes`), as the fortunes presets read it."""
    if not Path(FORTUNES_DIR).is_dir():
        raise FileNotFoundError(f"{FORTUNES_DIR} is missing: install the Debian package fortunes (make setup)")
    return FORTUNES_DIR
