"""The pretraining loop: forward, loss, backward, clip, step, then a visible teacher update."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from tqdm import tqdm

from data2vec import __version__
from data2vec.algorithms.ema import teacher_lag_warning
from data2vec.checkpoints.load import RUN_CHECKPOINT, RUN_EXPORT, TRAIN_FORMAT, read_weights
from data2vec.checkpoints.pretrained import save_pretrained
from data2vec.config import PretrainConfig, check_choices, from_dict, save_config, to_dict
from data2vec.models import build_model, input_key
from data2vec.train import distributed
from data2vec.train.checkpoint import (
    load_checkpoint, load_train_checkpoint, previous_path, rng_state, save_atomic, set_rng_state,
)
from data2vec.train.compilation import choose_compile, compile_blocks
from data2vec.train.data import PretrainData, SkipCounter, build_pretrain_data, usable_cpus
from data2vec.train.logging import MetricLogger, truncate_metrics
from data2vec.train.optim import build_optimizer
from data2vec.train.precision import autocast, choose_bf16
from data2vec.train.schedules import learning_rate
from data2vec.train.step import backward, clip_gradients, optimizer_step, set_lr

log = logging.getLogger("data2vec")
LAST = RUN_CHECKPOINT


def resolve_device(name: str) -> torch.device:
    """`auto`: this rank's GPU when there is one, else the CPU."""
    return distributed.resolve_device(name, distributed.env().local_rank)


@dataclass
class RunState:
    """Where a run stands. `epoch`/`batch_in_epoch` count global micro-batches of `micro_batch`
    samples (0: fixed by the data), so a run resumes at the same data on any world size."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    skipped: int = 0
    world_size: int = 1
    micro_batch: int = 0
    # Minutes inside the training loop, wall clock and this process's CPU time (all its threads;
    # loader workers are other processes), summed over resumed runs: the budget a run has spent.
    train_min: float = 0.0
    train_cpu_min: float = 0.0


def prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite a non-empty run directory unless resuming or forced."""
    if resume:
        if not (run_dir / LAST).exists() and not previous_path(run_dir / LAST).exists():
            raise FileNotFoundError(f"--resume: {run_dir / LAST} does not exist")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            raise FileExistsError(f"run directory {run_dir} is not empty; use --resume to continue it or --force to overwrite")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def mask_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """Masks depend only on (seed, step, global micro-batch), so resumed runs draw the same masks.

    Rank r's j-th micro-batch of a step is global micro-batch j * world_size + r: the masks of a
    sample are the same for any world size that keeps the micro-batch size.
    """
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + micro)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _accelerate(device: torch.device) -> None:
    """TF32 matmuls and convolutions where the GPU has them (fp32 results, faster inner products)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


_COUNT_UPDATES = ("features this early may not beat random weights. Count the budget in updates: raise "
                  "train.time_limit_min (or set it to 0) to finish the schedule")


def time_limit_message(limit_min: float, step: int, max_steps: int) -> str:
    """The warning for a run stopped by `train.time_limit_min`; before half of its schedule it
    says why that matters: the same minutes are fewer updates on a slower machine, and a speech
    run stopped at 184 of 1,000 updates fine-tuned no better than random weights, whether its
    schedules were cut there or planned to end there (docs/benchmarks-payoff.md, section 5.12)."""
    msg = f"time limit of {limit_min:.1f} min reached at step {step} of {max_steps}"
    if step < max_steps / 2:
        msg += (f": less than half the updates the schedules were planned for, and {_COUNT_UPDATES}, "
                f"or resume this run with --resume")
    return msg


def time_limit_forecast(limit_min: float, elapsed_s: float, steps_done: int, step: int, max_steps: int,
                        threads: Optional[tuple[int, int]] = None) -> Optional[str]:
    """The same warning early on: at the pace of the `steps_done` updates run in `elapsed_s`
    seconds (now at `step`), where the limit will stop the run; None unless before half its
    schedule. `threads`: (compute threads, CPUs this process may use) of a single CPU process;
    fewer threads than CPUs is named, as it was half the pace of section 5.12's 2-core machine
    (184 updates in ten minutes on one thread, 349 on both)."""
    if steps_done <= 0 or elapsed_s <= 0:
        return None
    reach = step + int(max(limit_min * 60 - elapsed_s, 0.0) * steps_done / elapsed_s)
    if reach >= max_steps / 2:
        return None
    msg = (f"at this pace ({elapsed_s / steps_done:.2f} s per update) the {limit_min:.1f}-minute time limit will "
           f"stop the run near step {reach} of {max_steps}, before half its schedule; {_COUNT_UPDATES}")
    if threads is not None and threads[0] < threads[1]:
        msg += (f". This process computes with {threads[0]} thread(s) on the {threads[1]} CPUs it may use: more "
                f"threads (OMP_NUM_THREADS) are more updates per minute")
    return msg


class Trainer:
    """Holds model, teacher, optimizer and data for one run; `train()` runs the loop.

    Under torchrun every rank builds the same Trainer: the student is wrapped (DDP or FSDP2,
    `train.parallel`), the EMA teacher stays outside the wrapper (identical on every rank),
    each rank reads its share of the data, and rank 0 alone logs and writes checkpoints.
    """

    def __init__(self, cfg: PretrainConfig, run_dir: str | Path, resume: bool = False, force: bool = False,
                 init: Optional[str | Path] = None, data: Optional[PretrainData] = None) -> None:
        check_choices(cfg)
        self.run_dir = Path(run_dir)
        self.dist = distributed.env()
        if self.dist.is_main:
            prepare_run_dir(self.run_dir, resume, force)
        distributed.barrier()
        if resume and not self.dist.is_main:
            prepare_run_dir(self.run_dir, resume, force)
        ckpt, ckpt_path = load_train_checkpoint(self.run_dir / LAST) if resume else (None, None)
        # (step, path) of the newest checkpoint known to be good: named when a run must stop.
        self.last_good: Optional[tuple[int, Path]] = (ckpt["state"]["step"], ckpt_path) if ckpt else None
        if ckpt is not None:
            saved = from_dict(PretrainConfig, ckpt["config"])
            if cfg.model != saved.model:
                raise ValueError(f"--resume: the model config differs from the one saved in {self.run_dir / LAST}")
        self.cfg, tc = cfg, cfg.train
        self.device = distributed.resolve_device(tc.device, self.dist.local_rank)
        self.bf16 = choose_bf16(tc.bf16, self.device)
        _accelerate(self.device)
        torch.manual_seed(tc.seed)
        self.model = build_model(cfg.model)
        teacher_state = self._load_init(init) if init and ckpt is None else None
        self.model.to(self.device)
        self.teacher = self.model.make_teacher().to(self.device)
        if teacher_state is not None:
            self.teacher.module.load_state_dict(teacher_state)
        self.data = data if data is not None else build_pretrain_data(cfg.data, cfg.model.input, tc)
        W = self.dist.world_size
        self.micro_per_step = self.data.configure(W, tc.micro_batch)
        self.accum = self.micro_per_step // W
        self.student = distributed.wrap_model(self.model, tc.parallel, self.device, "pretrain_forward", self.bf16,
                                              find_unused=cfg.model.encoder.layer_drop > 0
                                              or getattr(self.model, "unused_parameters_per_step", False))
        self.optimizer = build_optimizer(self.model, tc)
        if choose_compile(tc.compile, self.device, self.bf16):
            compile_blocks(self.model, self.teacher.module)
        self.state = RunState(world_size=W, micro_batch=tc.micro_batch)
        self.skips = SkipCounter("samples")
        self._local_skipped = self._local_samples = 0
        self._clock: Optional[tuple[float, float, float, float]] = None  # set while train() runs
        if ckpt is not None:
            self._restore(ckpt)
        elif self.dist.rank:
            torch.manual_seed(distributed.rank_seed(tc.seed, self.dist.rank))
        self.metrics: Optional[MetricLogger] = None
        if self.dist.is_main:
            save_config(cfg, str(self.run_dir / "config.json"))
            self.metrics = MetricLogger(self.run_dir)

    def _load_init(self, init: str | Path) -> Optional[dict[str, Any]]:
        """Continued pretraining: student (and teacher, when the file has one) from `init`."""
        _, student, teacher = read_weights(init)
        try:
            self.model.load_state_dict(student)
        except RuntimeError as e:
            raise ValueError(f"--init {init}: weights do not fit the model config: {e}") from e
        log.info("initialised from %s (%s teacher)", init, "with its" if teacher is not None else "copying the student as")
        return teacher

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """The run's state; a collective under torchrun (every rank must call it)."""
        s = self.state
        self._sync_counts()
        self._tick()
        rngs = distributed.all_gather_objects(rng_state())
        sharded = distributed.is_sharded(self.model)
        ckpt = {
            "format": TRAIN_FORMAT,
            "version": __version__,
            "config": to_dict(self.cfg),
            # Full weights even under FSDP, so every loader and exporter reads this one file.
            "model": distributed.full_model_state(self.model),
            "teacher": self.teacher.state_dict(),
            "optimizer": {} if sharded else self.optimizer.state_dict(),
            "scheduler": {"step": s.step, "kind": self.cfg.train.schedule},
            "state": {**asdict(s), "micro_batch": self.data_micro()},
            "rng": rngs[0],
            "rng_ranks": rngs,
            "data": distributed.all_gather_objects(self.data.stream_state()),
        }
        if sharded:  # the optimizer (and the student again) as shards: torch.distributed.checkpoint
            ckpt["sharded"] = f"step-{s.step:08d}.dcp"
        return ckpt

    def data_micro(self) -> int:
        return int(getattr(self.data, "micro", 0))

    def save(self) -> Path:
        """Rank 0 writes the checkpoint atomically; every rank must call this."""
        self._check_finite()
        path = self.run_dir / LAST
        ckpt = self.checkpoint()
        if "sharded" in ckpt:
            distributed.save_sharded(self.model, self.optimizer, path.parent / ckpt["sharded"])
            distributed.barrier()
        if self.dist.is_main:
            save_atomic(ckpt, path)  # last.pt names its shards, so a crash leaves a matching pair
            # Keep the newest two shard folders: last.pt's and the one last.prev.pt names.
            for old in sorted(path.parent.glob("step-*.dcp"))[:-2]:
                shutil.rmtree(old, ignore_errors=True)
        distributed.barrier()
        self.last_good = (self.state.step, path)
        return path

    def export(self) -> Path:
        """Write the run's weights as our safetensors folder (RUN/export/: config, student,
        EMA teacher; no pickle). Written beside and then swapped in, so a crash leaves the
        previous export whole. Rank 0 writes; every rank must call this."""
        final, tmp, old = (self.run_dir / f"{RUN_EXPORT}{s}" for s in ("", ".tmp", ".old"))
        state = distributed.full_model_state(self.model)  # a collective under FSDP
        if self.dist.is_main:
            for stale in (tmp, old):
                shutil.rmtree(stale, ignore_errors=True)
            save_pretrained(state, self.cfg, tmp, teacher=self.teacher.module,
                            metadata={"source": self.run_dir.name, "source_format": "data2vec",
                                      "step": str(self.state.step)})
            if final.exists():
                final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        distributed.barrier()
        return final

    def _restore(self, ckpt: dict[str, Any]) -> None:
        if "sharded" in ckpt:  # any world size, sharded or not: DCP reshards on load
            distributed.load_sharded(self.model, self.optimizer, self.run_dir / "checkpoints" / ckpt["sharded"])
        elif distributed.is_sharded(self.model):
            raise ValueError(f"--resume: {self.run_dir / LAST} was not written by an FSDP run; "
                             "resume it with train.parallel=ddp")
        else:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.teacher.load_state_dict(ckpt["teacher"])
        if isinstance(ckpt.get("data"), list):
            self.data.restore_stream(ckpt["data"], self.dist.rank)
        saved = ckpt["state"]
        self.state = RunState(**saved)
        self.skips.total = self.state.skipped
        W, micro = self.dist.world_size, self.data_micro()
        if saved.get("micro_batch", micro) not in (0, micro):
            # Keep the sample position: the same samples, cut into micro-batches of another size.
            first = self.state.batch_in_epoch * saved["micro_batch"]
            self.state.batch_in_epoch = first // micro
            log.warning("--resume: micro-batches of %d samples instead of %d; the data order differs from "
                        "an uninterrupted run", micro, saved["micro_batch"])
        self.state.world_size, self.state.micro_batch = W, micro
        rngs = ckpt.get("rng_ranks", [ckpt["rng"]])
        if len(rngs) == W:
            set_rng_state(rngs[self.dist.rank])
        else:
            log.info("--resume: saved on %d ranks, resumed on %d (batches, masks and dropout are seeded per global "
                     "micro-batch, so they carry over while train.micro_batch stays the same)", len(rngs), W)
            torch.manual_seed(distributed.rank_seed(self.cfg.train.seed + self.state.step, self.dist.rank))
        if self.dist.is_main:
            truncate_metrics(self.run_dir / "metrics.jsonl", self.state.step)
        log.info("resumed %s at step %d", self.run_dir, self.state.step)

    # ------------------------------------------------------------------ the loop
    def batch_stream(self) -> Iterator[dict[str, Any]]:
        """This rank's micro-batches from the run's position on (pinned for GPUs)."""
        s = self.state
        return self.data.stream(s.epoch, s.batch_in_epoch, self.dist.rank, self.dist.world_size,
                                pin_memory=self.device.type == "cuda")

    def _advance(self) -> None:
        """Move the data position past the micro-batches one step consumed on all ranks."""
        s, n = self.state, self.data.batches_per_epoch()
        s.batch_in_epoch += self.micro_per_step
        while s.batch_in_epoch >= n:
            s.batch_in_epoch -= n
            s.epoch += 1

    def train_step(self, batches: Iterator[dict[str, Any]]) -> dict[str, Any]:
        """One optimizer step over this rank's micro-batches, then the teacher update.

        Returns the step's metrics as device tensors (no host sync) and floats.
        """
        tc, s, W = self.cfg.train, self.state, self.dist.world_size
        lr = learning_rate(s.step, tc.lr, tc.min_lr, tc.schedule, tc.warmup_steps, tc.hold_steps, tc.max_steps)
        set_lr(self.optimizer, lr)
        self.model.train()
        amp = autocast(self.bf16, self.device)
        sums: dict[str, Any] = {}
        samples = 0
        for micro in range(self.accum):
            batch = next(batches)
            while "num_skipped" in batch and batch["num_skipped"] and input_key(self.model, batch) not in batch:
                self._count_skips(batch)  # a batch of nothing but unreadable samples
                batch = next(batches)
            self._count_skips(batch)
            batch = _to_device(batch, self.device)
            g = micro * W + self.dist.rank  # this micro-batch's place in the global step
            gen = mask_generator(tc.seed, s.step, g)
            # Dropout and decoder noise too: the same draws for any world size, and after a resume.
            torch.manual_seed(mask_generator(tc.seed + 1, s.step, g).initial_seed())
            with distributed.sync_gradients(self.student, micro == self.accum - 1):
                with amp:
                    out = self.student(batch, self.teacher, gen, s.step)
                backward(out.loss, self.accum)
            for k, v in out.logs.items():
                sums[k] = sums.get(k, 0.0) + v / self.accum
            samples += int(batch[input_key(self.model, batch)].shape[0])
        grad_norm = distributed.full_tensor(clip_gradients(self.model.parameters(), tc.clip_norm))
        self._flag_nonfinite(grad_norm, s.step)
        optimizer_step(self.optimizer)
        s.step += 1
        self._advance()
        decay = self.teacher.update(self.model, s.step)  # the teacher follows the student
        sums["masked_views"] *= self.accum
        self._local_samples += samples
        sums.update(lr=lr, grad_norm=grad_norm.detach(), ema_decay=decay)
        return sums

    def _flag_nonfinite(self, grad_norm: torch.Tensor, step: int) -> None:
        """Remember the first step with a non-finite gradient norm, on the device (no sync)."""
        bad = ~torch.isfinite(grad_norm)
        if not hasattr(self, "_first_bad"):
            self._first_bad = torch.full((), -1, dtype=torch.long, device=grad_norm.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)

    def _check_finite(self) -> None:
        """Stop (before anything is logged or saved) if a step since the last check had a
        non-finite gradient norm; checked every `log_every` steps so a step never syncs."""
        if hasattr(self, "_first_bad"):
            first = int(self._first_bad)
            if first >= 0:
                good = "no checkpoint was written yet" if self.last_good is None else \
                    f"the last good checkpoint is {self.last_good[1]} (step {self.last_good[0]})"
                raise FloatingPointError(f"step {first}: the loss or gradient norm is not finite; stopped without "
                                         f"saving; {good}; try a lower train.lr")

    def _count_skips(self, batch: dict[str, Any]) -> None:
        n = int(batch.get("num_skipped", 0))
        if n:
            self._local_skipped += n
            self.skips.add(n, self.state.step)

    def _sync_counts(self) -> int:
        """Add every rank's samples and skips since the last call to the run state; returns
        the samples added."""
        s = self.state
        counts = distributed.reduce_sum_ints([self._local_samples, self._local_skipped], self.device)
        s.samples_seen += counts[0]
        s.skipped += counts[1]
        self._local_samples = self._local_skipped = 0
        return counts[0]

    def _log(self, step_logs: dict[str, Any], views: float, seconds: float) -> dict[str, float]:
        """This step's metrics averaged over ranks (one all-reduce, one host copy) and the
        window's throughput; rank 0 writes them."""
        self._check_finite()
        s = self.state
        samples = self._sync_counts()
        logs = distributed.reduce_mean(step_logs, self.device)
        # Counted from the batches themselves: audio batches vary in size.
        logs["samples_per_s"] = samples / seconds
        logs["masked_views"] *= self.dist.world_size  # per step, all ranks
        logs["views_per_s"] = views * self.dist.world_size / seconds
        logs["skipped_total"] = s.skipped
        self._tick()
        logs["train_min"], logs["train_cpu_min"] = s.train_min, s.train_cpu_min
        if self.metrics is not None:
            self.metrics.log(s.step, logs)
        return logs

    def train(self, progress: bool = True) -> dict[str, Any]:
        """Run until `train.max_steps` (or the time limit). Returns a summary."""
        tc, s = self.cfg.train, self.state
        log.info("resolved config:\n%s", json.dumps(to_dict(self.cfg), indent=2))
        log.info("%s: %d micro-batch(es) per rank per step", distributed.describe(self.dist), self.accum)
        lag = teacher_lag_warning(self.cfg.model.teacher, tc.max_steps)
        if lag and self.dist.is_main:
            log.warning(lag)
        batches = self.batch_stream()
        bar = tqdm(total=tc.max_steps, initial=s.step, disable=not (progress and self.dist.is_main),
                   dynamic_ncols=True, desc="pretrain")
        t0 = time.perf_counter()
        self._clock = (t0, time.process_time(), s.train_min, s.train_cpu_min)
        window_t, window_views = t0, 0.0
        start_step = s.step
        try:
            while s.step < tc.max_steps:
                step_logs = self.train_step(batches)
                window_views += step_logs["masked_views"]
                bar.update(1)
                if s.step % tc.log_every == 0 or s.step == tc.max_steps:
                    now = time.perf_counter()
                    logs = self._log(step_logs, window_views, now - window_t)
                    window_t, window_views = now, 0.0
                    bar.set_postfix(loss=f"{logs['loss']:.4f}", tgt_std=f"{logs['target_std']:.3f}",
                                    pred_std=f"{logs['pred_std']:.3f}", lr=f"{logs['lr']:.2e}")
                if s.step % tc.ckpt_every == 0:
                    self.save()
                if tc.time_limit_min > 0 and s.step - start_step == 2 * tc.log_every and self.dist.is_main:
                    early = time_limit_forecast(tc.time_limit_min, time.perf_counter() - t0, s.step - start_step,
                                                s.step, tc.max_steps, self._cpu_threads())
                    if early:
                        log.warning(early)
                if tc.time_limit_min > 0 and self._time_up(t0, s.step % tc.log_every == 0):
                    log.warning(time_limit_message(tc.time_limit_min, s.step, tc.max_steps))
                    break
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()
        self.save()
        self._clock = None
        export = self.export()
        elapsed = time.perf_counter() - t0
        return {"steps": s.step, "steps_this_run": s.step - start_step, "seconds": elapsed,
                "train_min": s.train_min, "train_cpu_min": s.train_cpu_min,
                "skipped": s.skipped, "checkpoint": str(self.run_dir / LAST), "export": str(export)}

    def _tick(self) -> None:
        """Bring the run's cumulative wall and CPU minutes up to now (while `train` runs)."""
        if self._clock is not None:
            wall0, cpu0, base_wall, base_cpu = self._clock
            self.state.train_min = base_wall + (time.perf_counter() - wall0) / 60
            self.state.train_cpu_min = base_cpu + (time.process_time() - cpu0) / 60

    def _cpu_threads(self) -> Optional[tuple[int, int]]:
        """(compute threads, usable CPUs) of a single process on the CPU, else None: each rank
        of a distributed run is meant to have a share of the CPUs."""
        if self.device.type != "cpu" or self.dist.distributed:
            return None
        return torch.get_num_threads(), usable_cpus()

    def _time_up(self, t0: float, log_step: bool) -> bool:
        """Rank 0's clock decides, at logging steps, so every rank stops after the same step."""
        up = time.perf_counter() - t0 > self.cfg.train.time_limit_min * 60
        if not self.dist.distributed:
            return up
        return log_step and bool(distributed.broadcast_object(up))


def pretrain(cfg: PretrainConfig, run_dir: str | Path, resume: bool = False, force: bool = False,
             progress: bool = True, init: Optional[str | Path] = None) -> dict[str, Any]:
    """Pretrain with `cfg` into `run_dir` (or continue it with `resume=True`).

    `init` starts student and teacher from released or exported weights (a fairseq `.pt` or a
    `save_pretrained` folder): continued pretraining on new data.
    """
    with distributed.distributed_run(cfg.train.device):
        return Trainer(cfg, run_dir, resume=resume, force=force, init=init).train(progress=progress)

