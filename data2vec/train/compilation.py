"""`train.compile` = true, false or "auto": torch.compile the Transformer blocks.

Only the blocks are compiled: they hold nearly all of the compute and see few distinct shapes,
while the masking and target code around them is data-dependent and would only break the graph.
Compiling costs minutes of start-up (inductor builds C++ kernels on CPU, Triton on GPU) and pays
off where the fused pointwise code matters against the matrix products: under bf16 autocast, on
GPUs and on CPUs with native BF16 (see docs/benchmarks.md). "auto" decides from the machine.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil

import torch
from torch import nn

log = logging.getLogger("data2vec")
COMPILE_SETTINGS = (True, False, "auto")


def has_compiler(device: torch.device) -> bool:
    """Whether inductor can build kernels here: a C++ compiler (CPU) or Triton (CUDA)."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return device.type == "cpu" and any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def resolve_compile(setting: bool | str, device: torch.device, bf16: bool) -> tuple[bool, str]:
    """Whether to compile the blocks on `device`, and why (for the log).

    setting: `train.compile`; bf16: whether the run trains under bf16 autocast (`resolve_bf16`).
    "auto" compiles under bf16 autocast when inductor has a compiler; in fp32 on CPU the blocks
    are matrix products that eager already runs in the same MKL kernels, so it stays eager.
    """
    if setting not in COMPILE_SETTINGS:
        raise ValueError(f"train.compile={setting!r}; expected true, false or auto")
    if setting != "auto":
        return bool(setting), f"train.compile={str(setting).lower()}"
    if not has_compiler(device):
        return False, f"train.compile=auto; no kernel compiler for {device.type} (C++ compiler or Triton)"
    if device.type == "cuda":
        return True, "train.compile=auto on CUDA"
    if not bf16:
        return False, "train.compile=auto; fp32 on CPU (the compiled blocks are not faster there)"
    return True, "train.compile=auto; bf16 autocast on a CPU with a C++ compiler"


def choose_compile(setting: bool | str, device: torch.device, bf16: bool) -> bool:
    """`resolve_compile`, logging the choice once (call at the start of a run)."""
    on, why = resolve_compile(setting, device, bf16)
    log.info("torch.compile: %s (%s)", "Transformer blocks compiled" if on else "eager", why)
    return on


def compile_blocks(*modules: nn.Module) -> int:
    """torch.compile every Transformer block of `modules`, in place; returns how many.

    Module names and state dicts are unchanged (`Module.compile` keeps the module itself).
    """
    from data2vec.nn.block import Block

    n = 0
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, Block):
                sub.compile()
                n += 1
    return n
