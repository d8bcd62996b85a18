"""Streaming shards: WebDataset tar files for corpora larger than one disk or RAM.

`write_shards` turns an image folder, an idx file, an audio folder or a `.tsv` manifest into
`shard-NNNNNN.tar` files (samples shuffled once, at write time) plus `index.json`. Training reads
them as a stream: each epoch the shards are put in a seeded order and dealt out to reading
slots, one per (rank, data-loader worker), so every slot reads its own shards and the slots
together read every sample once per epoch. A slot's stream runs on into the next epoch, so no
sample is dropped at an epoch end and ranks never run dry at different times.

The stream position of every slot (epoch, shard, sample) is part of the training checkpoint;
`--resume` on the same world size and worker count continues exactly, with neither repeats nor
gaps. On another layout the stream restarts at the beginning of the earliest epoch any slot was
in (some samples of that epoch are seen again; a warning says so).
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from data2vec.train.data import resolve_num_workers
from data2vec.train.distributed import split_batch

log = logging.getLogger("data2vec")
INDEX = "index.json"
FORMAT = "data2vec-shards"
Position = tuple[int, int, int]  # (epoch, shard number within the slot's list, next sample in it)


# --------------------------------------------------------------------------- writing
def _image_items(source: Path, limit: int) -> tuple[list[Callable[[], tuple[str, bytes]]], str]:
    from data2vec.data.image import IdxImages, find_images

    if source.is_dir():
        files = find_images(source)[: limit or None]
        return [lambda f=f: (f.suffix.lower().lstrip(".").replace("jpeg", "jpg"), f.read_bytes()) for f in files], "image"
    images = IdxImages(source, limit=limit)

    def png(i: int) -> tuple[str, bytes]:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(images.images[i]).save(buf, format="PNG")
        return "png", buf.getvalue()

    return [lambda i=i: png(i) for i in range(len(images))], "image"


def _audio_items(source: Path, limit: int) -> tuple[list[Callable[[], tuple[str, bytes]]], str]:
    import soundfile as sf

    from data2vec.data.audio import TARGET_SAMPLE_RATE, find_audio_files, load_audio, read_manifest

    if source.is_dir():
        files = find_audio_files(source)
    else:
        root, entries = read_manifest(source)
        files = [root / e.path for e in entries]

    def flac(f: Path) -> tuple[str, bytes]:
        buf = io.BytesIO()  # decoded, mixed down and resampled once: 16 kHz 16-bit FLAC
        sf.write(buf, load_audio(f), TARGET_SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        return "flac", buf.getvalue()

    return [lambda f=f: flac(f) for f in files[: limit or None]], "audio"


def _source_items(source: Path, limit: int) -> tuple[list[Callable[[], tuple[str, bytes]]], str]:
    from data2vec.data.audio import audio_extensions, find_audio_files
    from data2vec.data.image import find_images

    if not source.exists():
        raise FileNotFoundError(f"shards source {source} does not exist")
    if source.suffix == ".tsv":
        return _audio_items(source, limit)
    if source.is_dir():
        if find_images(source):
            return _image_items(source, limit)
        if find_audio_files(source):
            return _audio_items(source, limit)
        raise ValueError(f"{source} holds no image or audio files (audio: {sorted(audio_extensions())})")
    return _image_items(source, limit)  # an idx file; IdxImages names what is wrong otherwise


def write_shards(source: str | Path, out: str | Path, samples_per_shard: int = 1000, seed: int = 0,
                 limit: int = 0) -> dict[str, Any]:
    """Write `source` (image folder, idx file, audio folder or .tsv manifest) as tar shards in `out`.

    Samples are shuffled with `seed` before writing; each keeps its index in the source as its
    key. Audio is stored decoded and resampled (16 kHz FLAC). Unreadable audio is left out and
    counted; images are stored as their original bytes (and checked when read). Returns the index.
    """
    source, out = Path(source), Path(out)
    if samples_per_shard < 1:
        raise ValueError(f"--samples-per-shard must be at least 1, got {samples_per_shard}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"shard folder {out} is not empty")
    items, kind = _source_items(source, limit)
    if not items:
        raise ValueError(f"{source}: nothing to write")
    out.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(items)).tolist()
    skipped = 0
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=samples_per_shard, verbose=0) as writer:
        for i in order:
            try:
                ext, data = items[i]()
            except Exception as e:  # decoders raise many types for corrupt data
                log.warning("skipping unreadable sample %d of %s: %s", i, source, e)
                skipped += 1
                continue
            writer.write({"__key__": f"{i:010d}", ext: data})
    shards = [{"name": p.name, "samples": sum(1 for m in tarfile.open(p) if m.isfile())}
              for p in sorted(out.glob("shard-*.tar"))]
    index = {"format": FORMAT, "kind": kind, "source": str(source), "seed": seed,
             "samples": sum(s["samples"] for s in shards), "skipped": skipped, "shards": shards}
    (out / INDEX).write_text(json.dumps(index, indent=1))
    return index


def is_shard_folder(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


def read_index(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read shard index {path}: {e}") from e
    if index.get("format") != FORMAT or not index.get("shards"):
        raise ValueError(f"{path} is not a data2vec shard index (write one with `data2vec shards`)")
    return index


# --------------------------------------------------------------------------- reading
def read_shard(path: Path) -> list[dict[str, Any]]:
    """The samples of one tar shard, in stored order: {"__key__": ..., ext: bytes}."""
    with open(path, "rb") as f:
        files = wds.tariterators.tar_file_expander(iter([{"stream": f, "url": str(path)}]))
        return list(wds.tariterators.group_by_keys(files))


def slot_samples(shards: list[Path], slot: int, slots: int, seed: int, start: Position
                 ) -> Iterator[tuple[Position, int, dict[str, Any]]]:
    """Slot `slot` of `slots`: its shards of each epoch in turn, endlessly, from `start`.

    Each epoch deals a seeded permutation of the shards round-robin to the slots, and reads each
    shard in a seeded order. Yields (position after this sample, epoch, sample).
    """
    if len(shards) < slots:
        raise ValueError(f"{len(shards)} shards for {slots} readers (ranks x data-loader workers); write "
                         "at least one shard per reader (data2vec shards --samples-per-shard)")
    epoch, first, offset = start
    while True:
        order = np.random.default_rng((seed, epoch)).permutation(len(shards)).tolist()
        mine = order[slot::slots]
        for n in range(first, len(mine)):
            samples = read_shard(shards[mine[n]])
            perm = np.random.default_rng((seed, epoch, mine[n])).permutation(len(samples)).tolist()
            for j in range(offset, len(samples)):
                yield (epoch, n, j + 1), epoch, samples[perm[j]]
            offset = 0
        first, epoch = 0, epoch + 1


class ShardStream(IterableDataset):
    """One rank's micro-batches; each data-loader worker reads one slot.

    Batches carry "_slot" and "_position" (where that slot stands after the batch) for the
    trainer's checkpoint, and "sample_key"/"sample_epoch" (which samples they hold).
    """

    def __init__(self, data: "ShardData", rank: int, workers: int, shift: int) -> None:
        self.data, self.rank, self.workers, self.shift = data, rank, workers, shift

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        k = (info.id if info else 0) + self.shift  # resume at the worker whose turn it was
        slot = self.rank * self.workers + k % self.workers
        d = self.data
        pending: list[tuple[int, int, Any]] = []
        for pos, epoch, sample in slot_samples(d.shard_paths, slot, d.slots, d.seed, d.positions.get(slot, (0, 0, 0))):
            key = int(sample["__key__"])
            pending.append((key, epoch, d.decode(sample, d.seed, epoch, key)))
            if len(pending) == d.micro:
                batch = d.collate([item for _, _, item in pending])
                batch.update(_slot=slot, _position=pos, sample_key=torch.tensor([p[0] for p in pending]),
                             sample_epoch=torch.tensor([p[1] for p in pending]))
                pending = []
                yield batch


class ShardData:
    """`PretrainData` streaming from a shard folder; `decode(sample, seed, epoch, key)` turns one
    stored sample into a collate item (None when unreadable)."""

    def __init__(self, folder: str | Path, decode: Callable, collate: Callable, batch_size: int, seed: int,
                 num_workers: int | str = 0) -> None:
        self.folder = Path(folder)
        self.index = read_index(self.folder)
        self.shard_paths = [self.folder / s["name"] for s in self.index["shards"]]
        self.decode, self.collate, self.batch_size, self.seed = decode, collate, batch_size, seed
        self.num_workers = resolve_num_workers(num_workers)
        self.micro, self.slots = batch_size, max(1, num_workers)
        self.positions: dict[int, Position] = {}
        self.shift = 0
        self._handed = 0

    @property
    def num_samples(self) -> int:
        return int(self.index["samples"])

    def configure(self, world_size: int, micro_batch: int = 0) -> int:
        self.micro, accum = split_batch(self.batch_size, world_size, micro_batch)
        self.slots = world_size * max(1, self.num_workers)
        return accum * world_size

    def batches_per_epoch(self) -> int:
        return max(1, self.num_samples // self.micro)

    def stream(self, epoch: int, start: int, rank: int = 0, world_size: int = 1,
               pin_memory: bool = False) -> Iterator[dict[str, Any]]:
        """This rank's batches from the restored stream position (`epoch`/`start` are not used:
        the position is per slot)."""
        workers = max(1, self.num_workers)
        loader = DataLoader(ShardStream(self, rank, workers, self.shift), batch_size=None,
                            num_workers=self.num_workers, pin_memory=pin_memory,
                            prefetch_factor=2 if self.num_workers else None)
        for batch in loader:
            self.positions[int(batch.pop("_slot"))] = tuple(int(v) for v in batch.pop("_position"))
            self._handed += 1
            yield batch

    def stream_state(self) -> dict[str, Any]:
        """This rank's part of the stream position (the trainer gathers every rank's)."""
        return {"positions": {str(k): list(v) for k, v in self.positions.items()},
                "handed": self._handed, "slots": self.slots, "workers": max(1, self.num_workers)}

    def restore_stream(self, states: list[dict[str, Any]], rank: int) -> None:
        """Continue from every rank's saved stream position (see the module docstring)."""
        positions = {int(k): tuple(v) for s in states for k, v in s.get("positions", {}).items()}
        same = len(states) == self.slots // max(1, self.num_workers) and states[0]["slots"] == self.slots
        if same:
            self.positions = positions
            self._handed = states[rank]["handed"]
            self.shift = self._handed % max(1, self.num_workers)
            return
        epoch = min((p[0] for p in positions.values()), default=0)
        log.warning("--resume: the shards were read by %d slots, now by %d; the stream restarts at the "
                    "beginning of epoch %d (some of its samples are seen again)", states[0]["slots"], self.slots, epoch)
        self.positions = {slot: (epoch, 0, 0) for slot in range(self.slots)}


# --------------------------------------------------------------------------- decoders
def image_decoder(transform: Callable, channels: int) -> Callable:
    """decode(sample, seed, epoch, key) for image shards: {"image", "label"} or None."""
    from PIL import Image
    from torchvision.transforms import v2

    from data2vec.train.data import sample_seed

    mode = "L" if channels == 1 else "RGB"

    def decode(sample: dict[str, Any], seed: int, epoch: int, key: int) -> Optional[dict[str, Any]]:
        payload = next((v for k, v in sample.items() if not k.startswith("__")), None)
        try:
            with Image.open(io.BytesIO(payload)) as im:
                img = v2.functional.pil_to_tensor(im.convert(mode))
        except Exception:  # PIL raises many types for corrupt data
            log.warning("skipping unreadable image %s", sample.get("__key__"))
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(seed, epoch, key))  # augmentation fixed by (seed, epoch, sample)
            return {"image": transform(img), "label": -1}

    return decode


def audio_decoder(max_sample_size: int, min_sample_size: int, normalize: bool) -> Callable:
    """decode(sample, seed, epoch, key) for audio shards: {"audio", "index"} or None."""
    import soundfile as sf

    from data2vec.data.audio import normalize_waveform

    def decode(sample: dict[str, Any], seed: int, epoch: int, key: int) -> Optional[dict[str, Any]]:
        try:
            wav, _ = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
        except Exception as e:
            log.warning("skipping unreadable audio %s: %s", sample.get("__key__"), e)
            return None
        if len(wav) < min_sample_size:
            return None
        if len(wav) > max_sample_size:
            start = np.random.default_rng((seed, epoch, key)).integers(0, len(wav) - max_sample_size + 1)
            wav = wav[start : start + max_sample_size]
        wav = torch.from_numpy(np.ascontiguousarray(wav))
        return {"audio": normalize_waveform(wav) if normalize else wav, "index": key}

    return decode


# --------------------------------------------------------------------------- builders
def image_shards(data: Any, inp: Any, train: Any) -> ShardData:
    """Image pretraining data (`ImageDataConfig` whose path is a shard folder)."""
    from data2vec.data.image import collate_images, train_transform

    tf = train_transform(inp.image_size, data.crop_scale_min, data.hflip, data.mean, data.std)
    return ShardData(data.path, image_decoder(tf, inp.in_chans), collate_images, train.batch_size, train.seed,
                     train.num_workers)


def audio_shards(data: Any, train: Any) -> ShardData:
    """Audio pretraining data (`AudioDataConfig` whose path is a shard folder): fixed-size
    micro-batches of cropped utterances, zero-padded (length buckets need the whole corpus)."""
    from data2vec.data.audio_pretrain import collate_pretrain

    return ShardData(data.path, audio_decoder(data.max_sample_size, data.min_sample_size, data.normalize),
                     collate_pretrain, train.batch_size, train.seed, train.num_workers)
