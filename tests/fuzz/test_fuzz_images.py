"""Corrupted image files and idx files: skipped and counted, or one-line errors naming the file."""

import gzip
import io
import struct
import warnings
import zlib

import numpy as np
import torch
from PIL import Image

from data2vec.data.image import ImageFolder, IdxImages, TransformedImages, collate_images, train_transform


def _images(seed: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    out = []
    for fmt, ext, mode in [("PNG", "png", "RGB"), ("JPEG", "jpg", "RGB"), ("BMP", "bmp", "L"), ("GIF", "gif", "P"),
                           ("PNG", "png", "RGBA"), ("PNG", "png", "I;16"), ("WEBP", "webp", "RGB"),
                           ("TIFF", "tif", "CMYK")]:
        arr = rng.integers(0, 255, (int(rng.integers(1, 40)), int(rng.integers(1, 40)), 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).convert(mode).save(buf, format=fmt)
        out.append((ext, buf.getvalue()))
    return out


def _huge_png() -> bytes:
    """A PNG whose header claims 40000 x 40000 pixels (a decompression bomb), valid CRC."""
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", 40000, 40000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_corrupt_images_are_skipped_and_counted(tmp_path, fuzz, corrupt):
    f = fuzz("images")
    root = tmp_path / "images"
    (root / "good").mkdir(parents=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "good" / "aaa.png")  # the folder holds one good image
    n = 0
    for seed in range(4):
        for ext, data in _images(seed):
            for name, bad in corrupt(data, seed * 100 + n):
                (root / "bad" / f"{n:04d}_{name}.{ext}").parent.mkdir(exist_ok=True)
                (root / "bad" / f"{n:04d}_{name}.{ext}").write_bytes(bad)
                n += 1
    (root / "bad" / "bomb.png").write_bytes(_huge_png())
    (root / "bad" / "directory.png").mkdir()
    data = TransformedImages(ImageFolder(root, channels=3), train_transform(16, 0.5, True, (0.5,) * 3, (0.5,) * 3))
    assert len(data) >= 300
    items = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(data)):
            with f.timed() as t:
                item = data[i]
            items.append(item)
            if item is None:
                f.record("skipped", t.seconds)
            else:
                assert item["image"].shape == (3, 16, 16) and torch.isfinite(item["image"]).all()
                f.record("accepted", t.seconds)
    batch = collate_images(items)
    assert batch["num_skipped"] == sum(it is None for it in items) > 0
    assert batch["image"].shape[0] == len(items) - batch["num_skipped"]


def _idx(images: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, images.ndim) + struct.pack(f">{images.ndim}I", *images.shape) + images.tobytes()


def test_corrupt_idx_files_are_errors_naming_the_file(tmp_path, fuzz, corrupt):
    f = fuzz("idx")
    rng = np.random.default_rng(0)
    for seed in range(14):
        raw = _idx(rng.integers(0, 255, (int(rng.integers(1, 6)), 6, 5), dtype=np.uint8))
        for gz in (False, True):
            data = gzip.compress(raw) if gz else raw
            for k, (name, bad) in enumerate(corrupt(data, seed)):
                path = tmp_path / f"s{seed}_{k}_{name}-images-idx3-ubyte{'.gz' if gz else ''}"
                path.write_bytes(bad)
                with f.timed() as t:
                    try:
                        images = IdxImages(path)
                    except ValueError as e:
                        f.error(e, str(path))
                        continue
                assert images.images.ndim == 3 and len(images) == images.images.shape[0]
                f.record("accepted", t.seconds)
