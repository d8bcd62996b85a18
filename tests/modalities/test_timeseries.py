"""The time-series modality: `.ts` reading (corrupt series skipped and counted), the encoder's
shapes and masks, and pretrain -> embed -> probe -> finetune through the CLI on the built-in
Japanese Vowels data."""

import gzip
import json
import logging

import numpy as np
import pytest
import torch

from data2vec.cli import main
from data2vec.config import EncoderConfig
from data2vec.masking.common import make_mask_info
from data2vec.modalities import specs
from data2vec.modalities.timeseries import (
    VOWELS_TEST, VOWELS_TRAIN, SeriesEncoder, SeriesInputConfig, collate_series, read_ts,
)
from data2vec.presets import get_preset

TS = """# a comment
@problemName Toy
@timeStamps false
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
1,2,3,4:5,6,7,8:up
1,2,3:4,5,6:down
1,?,3:4,5,6:down
1,2:3:up
1,2,3,4,5:6,7,8,9,10:down
"""


def test_read_ts_reads_unequal_lengths_and_labels_and_skips_corrupt_series(tmp_path, caplog):
    path = tmp_path / "toy.ts.gz"
    with gzip.open(path, "wt") as f:
        f.write(TS)
    with caplog.at_level(logging.WARNING, logger="data2vec"):
        data = read_ts(path)
    assert [tuple(x.shape) for x in data.series] == [(2, 4), (2, 3), (2, 5)]
    assert data.labels == ["up", "down", "down"] and data.skipped == 2
    assert "skipped 2 unreadable series, e.g. line 11: missing values" in caplog.text
    torch.testing.assert_close(data.series[0][1], torch.tensor([5.0, 6, 7, 8]))
    assert read_ts(path, min_length=4).skipped == 3


def test_read_ts_names_the_file_when_it_is_not_a_ts_file(tmp_path):
    bad = tmp_path / "x.ts"
    bad.write_text("hello\n")
    with pytest.raises(ValueError, match=r"x.ts:1: expected a @header line or @data"):
        read_ts(bad)
    (tmp_path / "y.ts").write_text("@problemName y\n")
    with pytest.raises(ValueError, match="no @data line"):
        read_ts(tmp_path / "y.ts")
    with pytest.raises(FileNotFoundError, match="nope.ts: no such file"):
        read_ts(tmp_path / "nope.ts")


def test_the_built_in_data_is_japanese_vowels():
    train, test = read_ts(VOWELS_TRAIN), read_ts(VOWELS_TEST)
    assert (len(train.series), len(test.series), train.skipped, test.skipped) == (270, 370, 0, 0)
    assert {x.shape[0] for x in train.series} == {12} and sorted(set(train.labels)) == list("123456789")


def test_encoder_patches_padding_and_masks_never_on_padding():
    cfg = SeriesInputConfig(channels=3, patch_size=4, mask_prob=0.5, mask_length=2)
    enc = SeriesEncoder(cfg, EncoderConfig(dim=16, depth=1, num_heads=2))
    batch = collate_series([{"series": torch.randn(3, 40), "label": 0}, {"series": torch.randn(3, 23), "label": 1}])
    x, pad = enc.local_features(batch["series"], batch["padding_mask"])
    assert x.shape == (2, 10, 16) and pad.sum(1).tolist() == [0, 5]  # 23 samples: 5 whole patches
    mask = enc.make_mask(pad, 2, 10, torch.Generator().manual_seed(0))
    assert not (mask & pad).any() and mask.sum(1).tolist() == [2, 2]  # int(5 real * 0.5) each
    ctx = enc.contextualize(x, pad, make_mask_info(mask))
    assert ctx.x.shape == (2, 8, 16) and ctx.padding_mask.shape == (2, 8)
    with pytest.raises(ValueError, match=r"expected series of shape \(batch, 3 channels, >= 4 samples\)"):
        enc.local_features(torch.randn(2, 5, 40))


def test_the_modality_is_found_without_any_shared_file_naming_it():
    spec = specs()["timeseries"]
    assert "series-classification" in spec.tasks
    assert get_preset("data2vec2_series_small").model.input.kind == "timeseries"


@pytest.mark.integration
def test_pretrain_embed_probe_and_finetune_through_the_verbs(tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", "--preset", "data2vec2_series_tiny", "--out", str(run), "--no-progress",
                 "train.max_steps=6", "train.num_workers=0"]) == 0
    ckpt = str(run / "checkpoints" / "last.pt")
    assert main(["embed", ckpt, VOWELS_TEST, "--out", str(tmp_path / "e.npy"), "--no-progress"]) == 0
    assert np.load(tmp_path / "e.npy").shape == (370, 32)
    assert main(["probe", ckpt, "--train", VOWELS_TRAIN, "--test", VOWELS_TEST, "--knn-k", "5"]) == 0
    out = tmp_path / "ft"
    assert main(["finetune", "--task", "series-classification", "--init", ckpt, "--out", str(out), "--no-progress",
                 "train.max_steps=2", "train.batch_size=32"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["examples"] == {"train": 243, "valid": 27, "test": 370}  # 3 of each of the 9 speakers held out
    assert 0 <= results["test"]["accuracy"] <= 100
