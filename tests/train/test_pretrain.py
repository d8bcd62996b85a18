import json

import pytest
import torch

from data2vec.config import apply_overrides
from data2vec.presets import get_preset
from data2vec.train.checkpoint import load_checkpoint, save_atomic
from data2vec.train.logging import read_metrics
from data2vec.checkpoints.load import load_model
from data2vec.train.pretrain import Trainer, pretrain, time_limit_forecast, time_limit_message
from data2vec.train.schedules import cosine_with_warmup


def _cfg(path, *extra, preset="data2vec2_image_tiny"):
    return apply_overrides(get_preset(preset), [f"data.path={path}", "data.limit=2000", *extra])


def test_cosine_with_warmup():
    assert cosine_with_warmup(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 1.0, 10, 100) == pytest.approx(0.5)
    assert cosine_with_warmup(100, 1.0, 10, 100, min_lr=0.1) == pytest.approx(0.1)


@pytest.mark.integration
def test_a_few_steps_on_fashion_mnist_lower_the_loss(fmnist_train, tmp_path):
    cfg = _cfg(fmnist_train, "train.max_steps=40", "train.log_every=4", "train.lr=2e-3")
    pretrain(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    first = sum(r["loss_regression"] for r in rows[:2]) / 2
    last = sum(r["loss_regression"] for r in rows[-2:]) / 2
    assert last < 0.8 * first, (first, last)
    assert {"target_std", "pred_std", "ema_decay", "lr", "grad_norm", "samples_per_s"} <= set(rows[-1])
    assert (tmp_path / "run" / "tensorboard").is_dir() and (tmp_path / "run" / "config.json").exists()


@pytest.mark.integration
@pytest.mark.parametrize("preset", ["data2vec2_image_tiny", "data2vec_image_tiny"])
def test_stop_and_resume_matches_an_uninterrupted_run(fmnist_train, tmp_path, preset):
    cfg = _cfg(fmnist_train, "train.max_steps=12", "train.log_every=1", "train.ckpt_every=100",
               "model.encoder.dropout=0.1", preset=preset)  # dropout makes RNG restoration matter
    pretrain(cfg, tmp_path / "full", progress=False)
    half = apply_overrides(cfg, ["train.max_steps=5"])
    first = pretrain(half, tmp_path / "split", progress=False)
    second = pretrain(cfg, tmp_path / "split", resume=True, progress=False)
    full = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    rows = read_metrics(tmp_path / "split" / "metrics.jsonl")
    split = [r["loss"] for r in rows]
    assert len(split) == 12
    assert split == full  # bit-identical on CPU
    # The budget spent carries over a resume: minutes keep growing from where the first part stopped.
    assert 0 < first["train_cpu_min"] < second["train_cpu_min"] and first["train_min"] < second["train_min"]
    cpu = [r["train_cpu_min"] for r in rows]
    assert cpu == sorted(cpu) and cpu[4] <= first["train_cpu_min"] < cpu[5]
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_run_dir_is_not_overwritten_without_force(fmnist_train, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        Trainer(_cfg(fmnist_train), run)
    with pytest.raises(FileNotFoundError, match="last.pt does not exist"):
        Trainer(_cfg(fmnist_train), tmp_path / "other", resume=True)
    Trainer(_cfg(fmnist_train), run, force=True)
    assert not (run / "precious.txt").exists()


def test_checkpoint_holds_everything_and_loads_without_pickle(fmnist_train, tmp_path):
    cfg = _cfg(fmnist_train, "train.max_steps=2")
    pretrain(cfg, tmp_path / "run", progress=False)
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert {"model", "teacher", "optimizer", "scheduler", "state", "rng", "config"} <= set(ck)
    assert ck["state"]["step"] == 2
    model = load_model(tmp_path / "run" / "checkpoints" / "last.pt", "teacher").model
    assert not model.training


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "c.pt"
    save_atomic({"a": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"a": Boom()}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    save_atomic({"a": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read checkpoint .*c.pt"):
        load_checkpoint(path)


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_init_continues_from_exported_weights(fmnist_train, tmp_path):
    from data2vec.checkpoints.pretrained import save_pretrained

    cfg = _cfg(fmnist_train, "train.max_steps=2")
    trainer = Trainer(cfg, tmp_path / "a")
    trainer.train(progress=False)
    save_pretrained(trainer.model, cfg, tmp_path / "export", teacher=trainer.teacher)
    fresh = Trainer(cfg, tmp_path / "b", init=tmp_path / "export")
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[k], v), k
    for k, v in trainer.teacher.module.state_dict().items():
        assert torch.equal(fresh.teacher.module.state_dict()[k], v), k
    other = apply_overrides(cfg, ["model.encoder.dim=48", "model.decoder.dim=48"])
    with pytest.raises(ValueError, match="do not fit the model config"):
        Trainer(other, tmp_path / "c", init=tmp_path / "export")


@pytest.mark.integration
def test_audio_stop_and_resume_matches_an_uninterrupted_run(speech_corpus, tmp_path):
    # Audio batches come from their own sampler; the loader must not draw from the global RNG.
    cfg = apply_overrides(get_preset("data2vec2_audio_tiny"), [
        f"data.path={speech_corpus / 'train.tsv'}", "data.min_sample_size=8000", "train.max_steps=6",
        "train.log_every=1", "train.batch_size=4", "model.encoder.dropout=0.1"])
    pretrain(cfg, tmp_path / "full", progress=False)
    pretrain(apply_overrides(cfg, ["train.max_steps=3"]), tmp_path / "split", progress=False)
    pretrain(cfg, tmp_path / "split", resume=True, progress=False)
    full = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    split = [r["loss"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl")]
    assert len(split) == 6 and split == full


def test_tri_stage_schedule_warms_up_holds_and_decays_to_min_lr():
    from data2vec.train.schedules import learning_rate

    lrs = [learning_rate(s, 1e-3, 1e-5, "tri_stage", 10, 80, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[10] == pytest.approx(1e-3)
    assert all(v == pytest.approx(1e-3) for v in lrs[10:90])
    assert lrs[100] == pytest.approx(1e-5) and all(a >= b for a, b in zip(lrs[90:], lrs[91:]))
    with pytest.raises(ValueError, match="min_lr"):
        learning_rate(0, 1e-3, 0.0, "tri_stage", 10, 80, 100)
    with pytest.raises(ValueError, match="train.schedule"):
        learning_rate(0, 1e-3, 0.0, "linear", 10, 80, 100)


def test_a_run_stopped_early_by_its_time_limit_is_told_to_count_updates():
    early = time_limit_message(10.0, 184, 1000)
    assert early.startswith("time limit of 10.0 min reached at step 184 of 1000")
    assert "may not beat random weights" in early and "train.time_limit_min" in early and "--resume" in early
    assert time_limit_message(10.0, 600, 1000) == "time limit of 10.0 min reached at step 600 of 1000"


def test_a_time_limit_that_will_stop_the_run_early_is_told_at_the_start():
    # 20 updates in 60 s, 540 s left at 3 s an update: step 200 of 1,000
    early = time_limit_forecast(10.0, 60.0, 20, 20, 1000)
    assert early.startswith("at this pace (3.00 s per update) the 10.0-minute time limit will stop the run near "
                            "step 200 of 1000")
    assert "may not beat random weights" in early and "train.time_limit_min" in early
    assert time_limit_forecast(10.0, 60.0, 20, 320, 1000) is None  # a resumed run that reaches step 500
    assert time_limit_forecast(10.0, 6.0, 20, 20, 1000) is None
    assert time_limit_forecast(10.0, 0.0, 0, 0, 1000) is None
    assert "thread" not in early and "thread" not in time_limit_forecast(10.0, 60.0, 20, 20, 1000, (2, 2))
    pinned = time_limit_forecast(10.0, 60.0, 20, 20, 1000, (1, 2))
    assert pinned.endswith("This process computes with 1 thread(s) on the 2 CPUs it may use: more threads "
                           "(OMP_NUM_THREADS) are more updates per minute")


@pytest.mark.integration
def test_the_early_time_limit_warning_is_logged(fmnist_train, tmp_path, caplog, monkeypatch):
    cfg = _cfg(fmnist_train, "train.max_steps=100000", "train.log_every=1", "train.ckpt_every=100000",
               "train.time_limit_min=0.1")
    # A process pinned to fewer threads than its CPUs, whatever machine runs the test.
    monkeypatch.setattr("data2vec.train.pretrain.usable_cpus", lambda: torch.get_num_threads() + 1)
    with caplog.at_level("WARNING", logger="data2vec"):
        pretrain(cfg, tmp_path / "run", progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    early = [m for m in warnings if m.startswith("at this pace")]
    assert len(early) == 1 and f"computes with {torch.get_num_threads()} thread(s)" in early[0]
    assert any(m.startswith("time limit of 0.1 min reached") for m in warnings)
