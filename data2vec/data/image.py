"""Image data: unlabeled or labeled image folders and MNIST-format idx files.

Folders may nest to any depth; labels (for probing) come from the first-level sub-folder.
A file that cannot be decoded is skipped and counted, never fatal.
"""

from __future__ import annotations

import gzip
import math
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- idx files
def read_idx(path: str | Path) -> np.ndarray:
    """Read an MNIST-format idx file (optionally gzipped) into a uint8 array.

    Images: (N, H, W); labels: (N,). Raises ValueError naming the file when it is malformed.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a corrupt gzip stream
        raise ValueError(f"cannot read idx file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte idx files are supported (type code {data[2]:#x})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated idx header ({len(data)} bytes for {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise ValueError(f"{path}: header says {dims} = {expected} bytes, file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def idx_labels_for(images: Path) -> Optional[Path]:
    """The labels file next to an images file (`*-images-idx3-ubyte*` -> `*-labels-idx1-ubyte*`)."""
    cand = images.parent / images.name.replace("images-idx3", "labels-idx1")
    return cand if cand != images and cand.exists() else None


class IdxImages(Dataset):
    """Images from an idx file as (1, H, W) uint8 tensors, with labels when available."""

    def __init__(self, path: str | Path, labels: str | Path | None = None, limit: int = 0, channels: int = 1) -> None:
        self.path = Path(path)
        self.channels = channels
        self.images = read_idx(self.path)
        if self.images.ndim != 3:
            raise ValueError(f"{self.path}: expected (N, H, W) images, got shape {self.images.shape}")
        labels = Path(labels) if labels else idx_labels_for(self.path)
        self.labels = read_idx(labels).astype(np.int64) if labels else None
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{labels}: {len(self.labels)} labels for {len(self.images)} images in {self.path}")
        if limit:
            self.images = self.images[:limit]
            self.labels = self.labels[:limit] if self.labels is not None else None
        self.classes = [str(c) for c in range(int(self.labels.max()) + 1)] if self.labels is not None else []

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i].copy())[None].expand(self.channels, -1, -1).contiguous()

    def label(self, i: int) -> int:
        return -1 if self.labels is None else int(self.labels[i])


# --------------------------------------------------------------------------- folders
def find_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class ImageFolder(Dataset):
    """Every image below `root`, any nesting. Labels = first-level sub-folder names."""

    def __init__(self, root: str | Path, channels: int = 3, limit: int = 0) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.files = find_images(self.root)
        if limit:
            self.files = self.files[:limit]
        if not self.files:
            raise ValueError(f"{self.root} holds no image files (looked for {sorted(IMAGE_EXTENSIONS)})")
        self.mode = "L" if channels == 1 else "RGB"
        tops = [f.relative_to(self.root).parts for f in self.files]
        self.classes = sorted({p[0] for p in tops if len(p) > 1})
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = [index.get(p[0], -1) if len(p) > 1 else -1 for p in tops]
        self._check_readable()

    def _check_readable(self, tries: int = 50) -> None:
        for f in self.files[:tries]:
            if self._decode(f) is not None:
                return
        raise ValueError(f"{self.root}: none of the first {min(tries, len(self.files))} image files can be decoded")

    def _decode(self, f: Path) -> Optional[torch.Tensor]:
        try:
            with Image.open(f) as im:
                return v2.functional.pil_to_tensor(im.convert(self.mode))
        except Exception:  # PIL raises many types for corrupt data
            return None

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> Optional[torch.Tensor]:
        img = self._decode(self.files[i])
        if img is None:
            warnings.warn(f"skipping unreadable image {self.files[i]}", stacklevel=2)
        return img

    def label(self, i: int) -> int:
        return self.labels[i]


def open_images(path: str | Path, channels: int, limit: int = 0) -> IdxImages | ImageFolder:
    """An idx file or an image folder, by what `path` is."""
    path = Path(path)
    if path.is_dir():
        return ImageFolder(path, channels, limit)
    if not path.exists():
        raise FileNotFoundError(f"image data {path} does not exist")
    if "idx" in path.name or path.suffix in (".gz", ".idx3-ubyte"):
        return IdxImages(path, limit=limit, channels=channels)
    raise ValueError(f"{path}: expected an image folder or an idx file")


# --------------------------------------------------------------------------- transforms
def train_transform(size: int, crop_scale_min: float, hflip: bool, mean: tuple, std: tuple,
                    color_jitter: float = 0.0) -> v2.Transform:
    """[ColorJitter] + bicubic RandomResizedCrop (+ flip) + normalization, as Meta's image recipes.

    `color_jitter` > 0 jitters brightness, contrast and saturation by that much (BEiT / data2vec
    1.0 vision: 0.4; saturation leaves one-channel images unchanged).
    """
    ops: list[v2.Transform] = []
    if color_jitter > 0:
        ops.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    ops.append(v2.RandomResizedCrop(size, scale=(crop_scale_min, 1.0), antialias=True,
                                    interpolation=v2.InterpolationMode.BICUBIC))
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def eval_transform(size: int, mean: tuple, std: tuple) -> v2.Transform:
    return v2.Compose(
        [v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True),
         v2.Normalize(list(mean), list(std))]
    )


@dataclass
class TransformedImages(Dataset):
    """Applies a transform; yields {"image", "label"} or None for an unreadable file."""

    images: IdxImages | ImageFolder
    transform: v2.Transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Optional[dict[str, Any]]:
        img = self.images.load(i)
        if img is None:
            return None
        return {"image": self.transform(img), "label": self.images.label(i)}


def collate_images(items: list[Optional[dict[str, Any]]]) -> dict[str, Any]:
    """Stack images (B, C, H, W) and labels (B,); None items are dropped and counted."""
    good = [it for it in items if it is not None]
    out: dict[str, Any] = {"num_skipped": len(items) - len(good)}
    if good:
        out["image"] = torch.stack([it["image"] for it in good])
        out["label"] = torch.tensor([it["label"] for it in good])
    return out


# --------------------------------------------------------------------------- config + builder
from data2vec.config import DataConfig, InputConfig, TrainConfig, register_kind  # noqa: E402
from data2vec.train.data import FixedBatchData  # noqa: E402


@register_kind
@dataclass(frozen=True)
class ImageDataConfig(DataConfig):
    """Unlabeled images for pretraining: an image folder or an idx images file."""

    kind: str = "image"
    path: str = ""
    limit: int = 0  # use only the first N images (0: all)
    crop_scale_min: float = 0.2
    hflip: bool = True
    color_jitter: float = 0.0  # brightness = contrast = saturation jitter; 0 disables (BEiT: 0.4)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


def build_image_data(data: ImageDataConfig, inp: InputConfig, train: TrainConfig) -> FixedBatchData:
    if not data.path:
        raise ValueError("data.path is empty: give an image folder or an idx file, e.g. data.path=/my/images")
    from data2vec.data.shards import image_shards, is_shard_folder

    if is_shard_folder(data.path):
        return image_shards(data, inp, train)
    if len(data.mean) != inp.in_chans or len(data.std) != inp.in_chans:
        raise ValueError(
            f"data.mean/data.std have {len(data.mean)}/{len(data.std)} values for model.input.in_chans={inp.in_chans}"
        )
    if data.color_jitter < 0:
        raise ValueError(f"data.color_jitter must be >= 0, got {data.color_jitter}")
    images = open_images(data.path, inp.in_chans, data.limit)
    tf = train_transform(inp.image_size, data.crop_scale_min, data.hflip, data.mean, data.std, data.color_jitter)
    return FixedBatchData(TransformedImages(images, tf), collate_images, train.batch_size, train.seed, train.num_workers)
