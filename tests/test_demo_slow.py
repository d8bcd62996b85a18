"""Slow end-to-end check (`make test-slow`): a short demo run learns features that beat the
random-weight encoder under a linear probe."""

import pytest

from data2vec.demo import run_demo


@pytest.mark.slow
@pytest.mark.integration
def test_short_demo_beats_random_weights(fmnist_train, tmp_path):
    result = run_demo(tmp_path / "demo", overrides=["train.max_steps=200", "model.teacher.anneal_steps=200",
                                                    "train.warmup_steps=20"],
                      probe_train=5000, progress=False)
    rows = {r["features"].split(" (")[0]: r for r in result["rows"]}
    assert rows["pretrained encoder"]["linear_top1"] > rows["random-weight encoder"]["linear_top1"] + 0.03
    assert (tmp_path / "demo" / "curves.png").stat().st_size > 10_000
