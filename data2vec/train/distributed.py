"""Multi-process training on torch.distributed, as launched by torchrun.

Every training loop uses the same few helpers: join the process group torchrun describes
(`init_distributed` / `teardown`), wrap the student (`wrap_model`: DDP, or FSDP2 with
`fully_shard`), turn gradient sync off while accumulating (`sync_gradients`), average
metrics over ranks (`reduce_mean`), and let rank 0 alone write files (`is_main`, `barrier`).
With one process (no torchrun) every helper is a no-op, so the same loop runs unchanged.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger("data2vec")
PARALLEL = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global rank, number of processes, rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env() -> DistEnv:
    """The current process's place, from the process group (or torchrun's variables before it)."""
    if dist.is_available() and dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` is this rank's GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_name: str = "auto", timeout_min: float = 30.0) -> tuple[DistEnv, torch.device]:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, MASTER_ADDR, ...).

    NCCL on GPUs, gloo on CPUs. Without torchrun (WORLD_SIZE unset or 1) nothing is joined.
    Returns this process's place and the device it trains on.
    """
    e = env()
    device = resolve_device(device_name, e.local_rank)
    if not e.distributed or dist.is_initialized():
        return e, device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min),
                            device_id=device if device.type == "cuda" else None)
    if not e.is_main:
        logging.getLogger("data2vec").setLevel(logging.WARNING)  # rank 0 speaks for the job
    return env(), device


def teardown() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_run(device_name: str = "auto") -> Iterator[tuple[DistEnv, torch.device]]:
    """`init_distributed` ... `teardown`. An exception is reported with the rank that raised it,
    then re-raised so torchrun ends the whole job."""
    e, device = init_distributed(device_name)
    try:
        yield e, device
    except BaseException as exc:
        if e.distributed and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            print(f"data2vec: rank {e.rank} of {e.world_size} failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
        raise
    finally:
        teardown()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def split_batch(global_batch: int, world_size: int, micro_batch: int = 0) -> tuple[int, int]:
    """(samples per rank per micro-batch, micro-batches per rank per step) for a global batch.

    `micro_batch=0` gives every rank one micro-batch of `global_batch / world_size`.
    """
    if global_batch % world_size:
        raise ValueError(f"train.batch_size={global_batch} (the global batch) is not divisible by "
                         f"the {world_size} ranks")
    per_rank = global_batch // world_size
    micro = micro_batch or per_rank
    if per_rank % micro:
        raise ValueError(f"train.micro_batch={micro} does not divide the per-rank batch {per_rank} "
                         f"(train.batch_size={global_batch} over {world_size} ranks)")
    return micro, per_rank // micro


def rank_plan(plan: Callable[[int], list], epoch: int, start: int, rank: int, world_size: int) -> Iterator[Any]:
    """Rank `rank`'s entries of the endless global sequence plan(epoch)[start:], plan(epoch + 1), ...

    It takes entries start + rank, start + rank + world_size, ... across epoch boundaries, so the
    ranks together take every entry exactly once.
    """
    offset = rank
    while True:
        entries = plan(epoch)
        yield from entries[start + offset :: world_size]
        offset = (offset - (len(entries) - start)) % world_size
        start, epoch = 0, epoch + 1


# --------------------------------------------------------------------------- wrapping
class ForwardMethod(nn.Module):
    """Exposes `module.<method>` as `forward`, so DDP sees the call it needs to sync gradients.

    DDP prepares its reducer in `forward`; the pretraining step calls `pretrain_forward`.
    """

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, self.method)(*args, **kwargs)


def wrap_model(model: nn.Module, parallel: str, device: torch.device, method: str = "forward",
               bf16: bool = False, find_unused: bool = False) -> nn.Module:
    """The student as the loop calls it: `model` itself on one process, else DDP or FSDP2.

    Returns a module whose `forward` runs `model.<method>`. Under FSDP2 `model` is sharded in
    place (its parameters become DTensors): each Transformer block is one shard unit, the rest
    belongs to the root; `bf16` sets the mixed-precision policy (bf16 compute, fp32 reduce).
    """
    if parallel not in PARALLEL:
        raise ValueError(f"train.parallel={parallel!r}; expected one of {PARALLEL}")
    if not env().distributed:
        return model if method == "forward" else ForwardMethod(model, method)
    if parallel == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(ForwardMethod(model, method), device_ids=ids,
                                                   find_unused_parameters=find_unused)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    from data2vec.nn.block import Block

    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (env().world_size,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for sub in model.modules():
        if isinstance(sub, Block):
            fully_shard(sub, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    if method != "forward":
        register_fsdp_forward_method(model, method)
    return ForwardMethod(model, method)


@contextmanager
def sync_gradients(wrapped: nn.Module, sync: bool) -> Iterator[None]:
    """Inside, backward all-reduces gradients only when `sync` (the last micro-batch of a step)."""
    if isinstance(wrapped, nn.parallel.DistributedDataParallel) and not sync:
        with wrapped.no_sync():
            yield
        return
    inner = getattr(wrapped, "module", None)
    if inner is not None and hasattr(inner, "set_requires_gradient_sync"):  # FSDP2
        inner.set_requires_gradient_sync(sync)
    yield


# --------------------------------------------------------------------------- collectives
def reduce_mean(values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, float]:
    """Average scalar metrics over ranks: one stacked all-reduce and one host copy."""
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([torch.as_tensor(values[k], dtype=torch.float32, device=device).reshape(()) for k in keys])
    if env().distributed:
        dist.all_reduce(stacked)
        stacked /= env().world_size
    return dict(zip(keys, stacked.tolist()))


def reduce_sum_ints(values: list[int], device: torch.device) -> list[int]:
    """Element-wise sums of integer counters over ranks."""
    if not env().distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_gradients(params: Iterator[torch.Tensor], bucket_mb: float = 25.0) -> None:
    """Average gradients over ranks in flat buckets (a parameter without a gradient on this rank
    counts as zeros), for loops that call the model in ways DDP's forward cannot wrap."""
    if not env().distributed:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    has = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
    dist.all_reduce(has)  # a gradient on no rank stays None (the optimizer skips the parameter)
    params = [p for p, n in zip(params, has.tolist()) if n > 0]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    world, limit, bucket, size = env().world_size, bucket_mb * 2**20, [], 0
    for i, p in enumerate(params):
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= limit or i == len(params) - 1:
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat)
            flat /= world
            for g, part in zip(bucket, flat.split([g.numel() for g in bucket])):
                g.copy_(part.view_as(g))
            bucket, size = [], 0


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list on one process)."""
    if not env().distributed:
        return [obj]
    out: list[Any] = [None] * env().world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank."""
    if not env().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def rank_seed(seed: int, rank: int) -> int:
    """Per-rank seed for dropout and other in-model randomness; rank 0 keeps `seed` itself."""
    return seed if rank == 0 else (seed * 1_000_003 + 7_919 * rank) & ((1 << 63) - 1)


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 has sharded `model`'s parameters (DTensors)."""
    return any(hasattr(p, "full_tensor") for p in model.parameters())


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """An FSDP2 DTensor gathered into one plain tensor (a collective); other tensors as they are."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full, unsharded CPU weights of `model` (a collective when sharded; complete on rank 0)."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Every rank writes its shards of student and optimizer with torch.distributed.checkpoint."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(path))


def load_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Read `save_sharded` output into `model`/`optimizer`, resharded for this world size."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optimizer": osd}
    dcp.load(state, checkpoint_id=str(path), no_dist=not (dist.is_available() and dist.is_initialized()))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def describe(e: Optional[DistEnv] = None) -> str:
    e = e or env()
    return f"rank {e.rank}/{e.world_size}" if e.distributed else "single process"
