import gzip
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from data2vec.data.image import (
    ImageFolder, IdxImages, TransformedImages, build_image_data, collate_images, open_images, read_idx, train_transform,
)
from data2vec.presets import get_preset


def _write_idx(path, arr, gz=True):
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_idx_round_trip_and_labels(tmp_path):
    imgs = np.random.randint(0, 255, (5, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5))
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), imgs)
    ds = IdxImages(tmp_path / "train-images-idx3-ubyte.gz")
    assert len(ds) == 5 and ds.label(3) == 3 and ds.load(0).shape == (1, 28, 28)
    assert IdxImages(tmp_path / "train-images-idx3-ubyte.gz", channels=3).load(0).shape == (3, 28, 28)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "x-images-idx3-ubyte"
    bad.write_bytes(b"\x01\x02garbage")
    with pytest.raises(ValueError, match="x-images-idx3-ubyte.*magic"):
        read_idx(bad)
    short = tmp_path / "y-images-idx3-ubyte"
    short.write_bytes(struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">3I", 2, 4, 4) + b"\0" * 5)
    with pytest.raises(ValueError, match="y-images-idx3-ubyte.*header says"):
        read_idx(short)


def _folder(tmp_path, n_per_class=3, corrupt=1):
    for c in ("cat", "dog"):
        d = tmp_path / c / "nested" / "deeper"
        d.mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(np.random.randint(0, 255, (20, 24, 3), dtype=np.uint8)).save(d / f"{i}.png")
    for i in range(corrupt):
        (tmp_path / "cat" / f"broken{i}.jpg").write_bytes(b"not an image at all")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_image_folder_any_nesting_labels_and_corrupt_files(tmp_path):
    ds = ImageFolder(_folder(tmp_path), channels=3)
    assert len(ds) == 7 and ds.classes == ["cat", "dog"]
    tf = train_transform(16, 0.5, True, (0.5,) * 3, (0.5,) * 3)
    items = [TransformedImages(ds, tf)[i] for i in range(len(ds))]
    assert sum(it is None for it in items) == 1
    batch = collate_images(items)
    assert batch["num_skipped"] == 1 and batch["image"].shape == (6, 3, 16, 16)
    assert sorted(batch["label"].tolist()) == [0, 0, 0, 1, 1, 1]


def test_folder_with_no_readable_image_is_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the first 1 image files can be decoded"):
        ImageFolder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        ImageFolder(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_images(tmp_path / "missing", 3)


def test_pretraining_batches_skip_corrupt_and_are_reproducible(tmp_path):
    _folder(tmp_path, n_per_class=4, corrupt=2)
    cfg = get_preset("data2vec2_image_tiny")
    from data2vec.config import apply_overrides

    cfg = apply_overrides(cfg, [f"data.path={tmp_path}", "data.mean=0.5", "data.std=0.5", "train.batch_size=5"])
    data = build_image_data(cfg.data, cfg.model.input, cfg.train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = list(data.batches(epoch=0))
        b = list(data.batches(epoch=0))
        c = list(data.batches(epoch=0, start=1))
    assert len(a) == 2 and sum(x["num_skipped"] for x in a) <= 2
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b) if "image" in x)
    if "image" in a[1]:
        assert torch.equal(a[1]["image"], c[0]["image"])  # resuming mid-epoch gives the same batch
    assert a[0]["image"].shape[1:] == (1, 28, 28)
