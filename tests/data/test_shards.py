"""Streaming shards: writing, per-rank/per-worker reading, exact resume of the stream position."""

import json

import pytest
import torch
from PIL import Image

from data2vec.cli import main as cli
from data2vec.config import apply_overrides
from data2vec.data.image import IdxImages
from data2vec.data.shards import ShardData, read_index, slot_samples, write_shards
from data2vec.presets import get_preset
from data2vec.train import distributed
from data2vec.train.logging import read_metrics
from data2vec.train.pretrain import Trainer


def _image_folder(root, fmnist, n=60):
    images = IdxImages(fmnist, limit=n)
    for i in range(n):
        sub = root / f"class{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images.images[i]).save(sub / f"{i:03d}.png")
    return root


def test_shards_cli_writes_every_sample_once(fmnist_train, tmp_path, capsys):
    folder = _image_folder(tmp_path / "images", fmnist_train)
    assert cli(["shards", str(folder), "--out", str(tmp_path / "shards"), "--samples-per-shard", "7"]) == 0
    index = read_index(tmp_path / "shards")
    assert index["kind"] == "image" and index["samples"] == 60
    assert [s["samples"] for s in index["shards"]] == [7] * 8 + [4]
    # Four readers (2 ranks x 2 workers) read disjoint shards that cover the epoch.
    paths = [tmp_path / "shards" / s["name"] for s in index["shards"]]
    keys = []
    for slot in range(4):
        stream = slot_samples(paths, slot, 4, seed=1, start=(0, 0, 0))
        got = []
        while True:
            pos, epoch, sample = next(stream)
            if epoch:  # this slot's stream has run on into epoch 1
                break
            got.append(int(sample["__key__"]))
        assert got  # every reader has shards of its own
        keys += got
    assert sorted(keys) == list(range(60))
    with pytest.raises(FileExistsError, match="not empty"):
        write_shards(folder, tmp_path / "shards")
    with pytest.raises(ValueError, match="9 shards for 16 readers"):
        next(slot_samples(paths, 0, 16, 1, (0, 0, 0)))


def _recorded_run(cfg, out, resume, record):
    """One rank: pretrain, writing down (epoch, key) of every sample its batches held."""
    with distributed.distributed_run(cfg.train.device) as (env, _):
        trainer = Trainer(cfg, out, resume=resume)
        stream = trainer.batch_stream

        def recording():
            for batch in stream():
                with open(record / f"rank{env.rank}.jsonl", "a") as f:
                    pairs = zip(batch["sample_epoch"].tolist(), batch["sample_key"].tolist())
                    f.write(json.dumps(list(pairs)) + "\n")
                yield batch

        trainer.batch_stream = recording
        trainer.train(progress=False)


def _seen(record):
    return {r: [tuple(p) for line in open(record / f"rank{r}.jsonl") for p in json.loads(line)] for r in (0, 1)}


@pytest.mark.integration
def test_two_ranks_two_workers_see_every_sample_once_per_epoch_across_a_resume(fmnist_train, tmp_path, run_ranks):
    folder = _image_folder(tmp_path / "images", fmnist_train)
    write_shards(folder, tmp_path / "shards", samples_per_shard=7)
    cfg = apply_overrides(get_preset("data2vec2_image_tiny"), [
        f"data.path={tmp_path / 'shards'}", "train.batch_size=8", "train.num_workers=2", "train.max_steps=15",
        "train.log_every=1", "train.bf16=false"])
    (tmp_path / "full_rec").mkdir()
    (tmp_path / "split_rec").mkdir()
    run_ranks(_recorded_run, 2, cfg, tmp_path / "full", False, tmp_path / "full_rec")
    run_ranks(_recorded_run, 2, apply_overrides(cfg, ["train.max_steps=5"]), tmp_path / "split", False,
              tmp_path / "split_rec")
    run_ranks(_recorded_run, 2, cfg, tmp_path / "split", True, tmp_path / "split_rec")
    full, split = _seen(tmp_path / "full_rec"), _seen(tmp_path / "split_rec")
    assert split == full  # the resumed stream neither repeats nor skips: the same samples, in order
    pairs = full[0] + full[1]
    assert len(pairs) == 15 * 8 and len(set(pairs)) == len(pairs)  # no (epoch, sample) twice
    assert sorted(k for e, k in pairs if e == 0) == list(range(60))  # epoch 0: every sample once
    losses = [[r["loss"] for r in read_metrics(tmp_path / d / "metrics.jsonl")] for d in ("full", "split")]
    assert losses[0] == losses[1]


def test_resuming_on_another_layout_restarts_the_earliest_epoch(fmnist_train, tmp_path, caplog):
    folder = _image_folder(tmp_path / "images", fmnist_train, n=20)
    write_shards(folder, tmp_path / "shards", samples_per_shard=5)
    data = ShardData(tmp_path / "shards", lambda s, *a: {"image": torch.zeros(1, 2, 2), "label": -1},
                     lambda items: {"image": torch.stack([i["image"] for i in items])}, 4, seed=0)
    data.configure(1)
    saved = [{"positions": {"0": [2, 1, 3], "1": [1, 0, 4]}, "handed": 9, "slots": 2, "workers": 1}] * 2
    data.restore_stream(saved, 0)
    assert data.positions == {0: (1, 0, 0)} and "restarts at the beginning of epoch 1" in caplog.text
