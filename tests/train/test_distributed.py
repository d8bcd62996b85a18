"""Multi-process pretraining on CPU with gloo (2 ranks); NCCL/CUDA variants are marked `cuda`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data2vec.config import apply_overrides
from data2vec.presets import get_preset
from data2vec.train.checkpoint import load_checkpoint
from data2vec.train import distributed
from data2vec.train.distributed import rank_plan, split_batch
from data2vec.train.logging import read_metrics
from data2vec.train.pretrain import pretrain

REPO = Path(__file__).resolve().parents[2]


def _cfg(path, *extra):
    return apply_overrides(get_preset("data2vec2_image_tiny"), [
        f"data.path={path}", "data.limit=512", "train.batch_size=16", "train.log_every=1", "train.bf16=false", *extra])


def _pretrain(cfg, out, resume=False):  # one rank's work (run_ranks forks two)
    pretrain(cfg, out, resume=resume, progress=False)


def test_split_batch_derives_per_rank_batch_and_accumulation():
    assert split_batch(256, 16, 16) == (16, 1)
    assert split_batch(256, 4, 16) == (16, 4)  # 4 GPUs accumulate to Meta's 16-GPU batch
    assert split_batch(64, 2) == (32, 1)
    with pytest.raises(ValueError, match="train.batch_size=10 .* not divisible by the 4 ranks"):
        split_batch(10, 4)
    with pytest.raises(ValueError, match="train.micro_batch=3"):
        split_batch(16, 2, 3)


def test_rank_plans_cover_every_batch_once_across_epochs_and_resumes():
    plan = lambda epoch: [(epoch, b) for b in range(5)]  # noqa: E731  5 micro-batches per epoch
    take = lambda it, n: [next(it) for _ in range(n)]  # noqa: E731
    one = take(rank_plan(plan, 0, 0, 0, 1), 12)
    # Two ranks from epoch 0 take alternate entries, across the odd-sized epoch boundary.
    r0, r1 = take(rank_plan(plan, 0, 0, 0, 2), 6), take(rank_plan(plan, 0, 0, 1, 2), 6)
    assert [x for pair in zip(r0, r1) for x in pair] == one
    # Resuming at global entry 7 (epoch 1, batch 2) on 3 ranks continues the same sequence.
    parts = [take(rank_plan(plan, 1, 2, r, 3), 2) for r in range(3)]
    assert [parts[r][j] for j in range(2) for r in range(3)] == take(rank_plan(plan, 0, 0, 0, 1), 13)[7:]


@pytest.mark.integration
def test_two_ranks_match_one_rank_with_the_same_global_batch(fmnist_train, tmp_path, run_ranks):
    # Global batch 16 in micro-batches of 8: one rank accumulates two, two ranks take one each.
    # Masks are seeded per global micro-batch, so both runs see identical batches and masks;
    # they differ only in the order of floating-point sums (all-reduce vs accumulation).
    cfg = _cfg(fmnist_train, "train.max_steps=6", "train.micro_batch=8")
    run_ranks(_pretrain, 2, cfg, tmp_path / "two")
    _pretrain(cfg, tmp_path / "one")
    two = read_metrics(tmp_path / "two" / "metrics.jsonl")
    one = read_metrics(tmp_path / "one" / "metrics.jsonl")
    assert len(two) == len(one) == 6
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["masked_views"] == a["masked_views"] == 32  # 16 samples x 2 clones, all ranks
    ca = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    cb = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    for k, v in ca["model"].items():
        torch.testing.assert_close(cb["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    for k, v in ca["teacher"]["module"].items():
        torch.testing.assert_close(cb["teacher"]["module"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert cb["state"]["samples_seen"] == ca["state"]["samples_seen"] == 6 * 16
    assert len(cb["rng_ranks"]) == 2 and cb["state"]["world_size"] == 2


def _torchrun(out, *overrides, resume=False, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone",
           "-m", "data2vec", "pretrain", "--out", str(out), "--no-progress", *(["--resume"] if resume else []),
           *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the worker torchrun started with RANK=rank."""
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    raise LookupError(f"no worker with RANK={rank}")


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_ends_the_job_naming_it_and_resume_continues_exactly(fmnist_train, tmp_path, run_ranks):
    # Dropout makes the per-rank RNG restoration matter.
    cfg = _cfg(fmnist_train, "train.max_steps=16", "train.ckpt_every=2", "model.encoder.dropout=0.1")
    run_ranks(_pretrain, 2, cfg, tmp_path / "full")
    preset = ["--preset", "data2vec2_image_tiny", f"data.path={fmnist_train}", "data.limit=512",
              "train.batch_size=16", "train.log_every=1", "train.max_steps=16", "train.ckpt_every=2",
              "model.encoder.dropout=0.1", "train.bf16=false"]
    job = _torchrun(tmp_path / "split", *preset)
    last = tmp_path / "split" / "checkpoints" / "last.pt"
    deadline = time.time() + 900  # torchrun and two interpreters start slowly on a loaded machine
    try:
        while not last.exists() and job.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert last.exists(), "no checkpoint was written before the deadline"
        os.kill(_rank_pid(job, 1), signal.SIGKILL)
        output, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode != 0, output
    assert "rank: 1" in output and "Signal 9" in output, output[-3000:]
    step = load_checkpoint(last)["state"]["step"]
    assert 2 <= step < 16  # the kill came mid-run; what was checkpointed is intact
    run_ranks(_pretrain, 2, cfg, tmp_path / "split", True)
    full = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    split = [r["loss"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl")]
    assert split == full  # bit-identical: same batches, masks and per-rank dropout
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(last)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


@pytest.mark.integration
def test_a_run_saved_on_two_ranks_resumes_on_one(fmnist_train, tmp_path, run_ranks):
    cfg = _cfg(fmnist_train, "train.max_steps=4", "train.micro_batch=8")
    run_ranks(_pretrain, 2, cfg, tmp_path / "run")
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    _pretrain(apply_overrides(cfg, ["train.max_steps=6"]), tmp_path / "run", resume=True)
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ck["state"]["step"] == 6 and ck["state"]["world_size"] == 1
    # The data position is global: 4 steps x 2 micro-batches, then 2 more steps x 2.
    assert ck["state"]["batch_in_epoch"] == saved["state"]["batch_in_epoch"] + 4 == 12
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]



@pytest.mark.integration
def test_fsdp_matches_ddp_and_its_sharded_checkpoint_round_trips(fmnist_train, tmp_path, run_ranks):
    cfg = _cfg(fmnist_train, "train.max_steps=3", "train.ckpt_every=100")
    run_ranks(_pretrain, 2, cfg, tmp_path / "ddp")
    fsdp = apply_overrides(cfg, ["train.parallel=fsdp"])
    run_ranks(_pretrain, 2, fsdp, tmp_path / "fsdp")
    a = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "fsdp" / "checkpoints" / "last.pt")
    assert b["sharded"] == "step-00000003.dcp" and (tmp_path / "fsdp" / "checkpoints" / b["sharded"]).is_dir()
    for k, v in a["model"].items():  # full weights in last.pt; same run as DDP up to summation order
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    for k, v in a["teacher"]["module"].items():
        torch.testing.assert_close(b["teacher"]["module"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    # Resume from the shards, on 2 ranks and (resharded) on 1: both continue the DDP run.
    run_ranks(_pretrain, 2, apply_overrides(fsdp, ["train.max_steps=5"]), tmp_path / "fsdp", True)
    run_ranks(_pretrain, 2, apply_overrides(cfg, ["train.max_steps=5"]), tmp_path / "ddp", True)
    a = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "fsdp" / "checkpoints" / "last.pt")
    assert b["state"]["step"] == 5 and sorted(p.name for p in (tmp_path / "fsdp" / "checkpoints").iterdir()) == [
        "last.prev.pt", "last.pt", "step-00000003.dcp", "step-00000005.dcp"]
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    _pretrain(apply_overrides(fsdp, ["train.max_steps=6"]), tmp_path / "fsdp", resume=True)
    assert load_checkpoint(tmp_path / "fsdp" / "checkpoints" / "last.pt")["state"]["step"] == 6


def test_compile_wraps_every_block_of_student_and_teacher(fmnist_train, tmp_path):
    from data2vec.nn.block import Block
    from data2vec.train.pretrain import Trainer

    trainer = Trainer(_cfg(fmnist_train, "train.compile=true"), tmp_path / "run")
    blocks = [m for root in (trainer.model, trainer.teacher.module) for m in root.modules() if isinstance(m, Block)]
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    assert set(trainer.model.state_dict()) == set(Trainer(_cfg(fmnist_train), tmp_path / "b").model.state_dict())


@pytest.mark.slow
def test_compiled_training_matches_eager(fmnist_train, tmp_path):
    cfg = _cfg(fmnist_train, "train.max_steps=3")
    _pretrain(cfg, tmp_path / "eager")
    _pretrain(apply_overrides(cfg, ["train.compile=true"]), tmp_path / "compiled")
    eager = [r["loss"] for r in read_metrics(tmp_path / "eager" / "metrics.jsonl")]
    compiled = [r["loss"] for r in read_metrics(tmp_path / "compiled" / "metrics.jsonl")]
    assert compiled == pytest.approx(eager, rel=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL)")
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gpus_with_nccl(fmnist_train, tmp_path, parallel):
    job = _torchrun(tmp_path / "run", "--preset", "data2vec2_image_tiny", f"data.path={fmnist_train}",
                    "data.limit=512", "train.max_steps=4", f"train.parallel={parallel}", "train.compile=true")
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output[-3000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]["step"] == 4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_gpu_step_uses_fused_adamw_bf16_and_pinned_batches(fmnist_train, tmp_path):
    from data2vec.train.pretrain import Trainer

    trainer = Trainer(_cfg(fmnist_train, "train.max_steps=2", "train.bf16=auto", "train.num_workers=1"),
                      tmp_path / "run")
    assert trainer.device.type == "cuda" and trainer.bf16
    assert trainer.optimizer.defaults["fused"]
    assert next(trainer.batch_stream())["image"].is_pinned()
    trainer.train(progress=False)


def _finetune_rank(cfg, out):
    """One rank of an image fine-tuning run on deterministic inputs (no augmentation draws)."""
    from data2vec.train.finetune import Finetuner
    from data2vec.train.finetune_run import build_run

    with distributed.distributed_run("cpu"):
        pre, model, task = build_run(cfg)
        task.train_set.transform = task.eval_sets["valid"].dataset.transform
        Finetuner(cfg, pre, model, task, out).train(progress=False)


@pytest.mark.integration
def test_two_rank_fine_tuning_matches_one_rank_accumulating(tmp_path, run_ranks):
    import numpy as np
    from PIL import Image

    from data2vec.recipes import get_recipe

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(24):
            img = rng.normal(60 if cls == "a" else 160, 20, (28, 28)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "img" / cls / f"{i}.png")
    cfg = apply_overrides(get_recipe("image_tiny"), [
        f"data.train={tmp_path / 'img'}", "data.test=", "data.valid_size=8", "data.label_frac=1.0",
        "train.device=cpu", "model.drop_path=0", "data.mixup=0", "data.cutmix=0", "train.max_steps=3",
        "train.label_smoothing=0", "train.bf16=false", "train.batch_size=4", "train.grad_accum=2"])
    run_ranks(_finetune_rank, 2, cfg, tmp_path / "two")
    _finetune_rank(cfg, tmp_path / "one")
    a = load_checkpoint(tmp_path / "one" / "finetuned.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "finetuned.pt")["model"]
    for k, v in a.items():
        torch.testing.assert_close(b[k], v, rtol=1e-5, atol=1e-6, msg=k)
    one = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl") if "loss" in r]
    two = [r["loss"] for r in read_metrics(tmp_path / "two" / "metrics.jsonl") if "loss" in r]
    assert two == pytest.approx(one, rel=1e-5)


def _raise_on_every_rank():
    with distributed.distributed_run("cpu") as (env, _):
        raise ValueError(f"cannot read shard-{env.rank}.tar")


def test_a_rank_that_raises_names_itself_and_the_cause(run_ranks, capfd):
    assert run_ranks(_raise_on_every_rank, 2, expect_ok=False) == [1, 1]
    err = capfd.readouterr().err
    assert "data2vec: rank 1 of 2 failed: ValueError: cannot read shard-1.tar" in err
    assert "data2vec: rank 0 of 2 failed: ValueError: cannot read shard-0.tar" in err
