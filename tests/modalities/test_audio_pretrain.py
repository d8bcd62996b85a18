"""Audio pretraining end to end on real synthesized speech, and the pretraining data."""

import shutil

import pytest
import torch

from data2vec.config import apply_overrides
from data2vec.data.audio_pretrain import AudioDataConfig, build_audio_data
from data2vec.presets import get_preset
from data2vec.train.logging import read_metrics
from data2vec.models import build_model
from data2vec.train.pretrain import pretrain


@pytest.fixture
def corpus(speech_corpus):
    return speech_corpus


def _tiny(corpus, *extra):
    return apply_overrides(get_preset("data2vec2_audio_tiny"), [f"data.path={corpus / 'train.tsv'}", *extra])


def test_a_few_pretraining_steps_on_synthesized_speech_lower_the_loss(corpus, tmp_path):
    cfg = _tiny(corpus, "train.max_steps=12", "train.log_every=1", "train.lr=3e-3")
    summary = pretrain(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    first = sum(r["loss_regression"] for r in rows[:3]) / 3
    last = sum(r["loss_regression"] for r in rows[-3:]) / 3
    assert last < 0.85 * first, (first, last)
    assert summary["skipped"] == 0


def test_batches_are_deterministic_and_resume_from_any_position(corpus):
    cfg = _tiny(corpus)
    data = build_audio_data(cfg.data, cfg.model.input, cfg.train)
    full = list(data.batches(1, 0))
    assert len(full) == data.batches_per_epoch() > 2
    again = list(data.batches(1, 2))
    for a, b in zip(full[2:], again):
        assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["padding_mask"], b["padding_mask"])
    other = list(data.batches(2, 0))
    assert any(not torch.equal(a["index"], b["index"]) for a, b in zip(full, other))
    total = sum(int(b["audio"].shape[0]) for b in full)
    assert total == data.num_samples
    assert all(b["audio"].shape[1] <= cfg.data.max_sample_size for b in full)


def test_corrupt_and_silent_files_are_skipped_and_counted(corpus, tmp_path):
    bad = tmp_path / "audio"
    shutil.copytree(corpus / "wav", bad)
    (bad / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage" * 200)  # header claims WAV, body is junk
    import numpy as np
    import soundfile as sf

    sf.write(bad / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    # In-process loading: a loader process prints its warnings to the console, out of pytest.warns' reach.
    cfg = apply_overrides(_tiny(corpus), [f"data.path={bad}", "train.num_workers=0"])
    data = build_audio_data(cfg.data, cfg.model.input, cfg.train)
    with pytest.warns(RuntimeWarning, match="broken.wav"):
        batches = list(data.batches(0, 0))
    assert sum(b["num_skipped"] for b in batches) == 1
    silent = [b for b in batches if "audio" in b and torch.isfinite(b["audio"]).all()]
    assert len(silent) == len([b for b in batches if "audio" in b])  # silence normalizes to zeros, not NaN


def test_bad_data_config_names_the_field(tmp_path):
    cfg = get_preset("data2vec2_audio_tiny")
    with pytest.raises(ValueError, match="data.path is empty"):
        build_audio_data(AudioDataConfig(), cfg.model.input, cfg.train)
    with pytest.raises(ValueError, match="data.min_sample_size"):
        build_audio_data(AudioDataConfig(path=str(tmp_path), min_sample_size=10, max_sample_size=5),
                         cfg.model.input, cfg.train)


def test_teacher_shares_the_feature_encoder_and_averages_the_rest():
    model = build_model(get_preset("data2vec2_audio_tiny").model)
    teacher = model.make_teacher()
    names = {n for n, _ in teacher.module.named_parameters()}
    assert not any("local_encoder" in n for n in names)  # conv stack + LN + projection are shared
    assert {"modality.alibi_scale", "modality.context_encoder.input_norm.weight"} <= names
    assert any(n.startswith("modality.relative_positional_encoder") for n in names)
    assert any("project_features" in n for n, _ in model.modality.local_encoder.named_parameters())


def test_base_preset_builds_and_runs_a_step():
    cfg = apply_overrides(get_preset("data2vec2_audio_base"), ["model.clone_batch=2"])
    model = build_model(cfg.model)
    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("decoder"))
    assert 93e6 < n < 95e6, n  # the reference's 93-94M parameter base model
    pad = torch.zeros(2, 8000, dtype=torch.bool)
    pad[1, 6000:] = True
    batch = {"audio": torch.randn(2, 8000).masked_fill(pad, 0.0), "padding_mask": pad}
    out = model.pretrain_forward(batch, model.make_teacher(), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logs["masked_views"] == 4
