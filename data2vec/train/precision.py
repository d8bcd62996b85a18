"""Training precision: `train.bf16` = true, false or "auto" (bf16 where the hardware has it).

bf16 autocast is several times faster than fp32 on GPUs and on CPUs with native BF16
instructions (AVX-512 BF16, AMX), and several times slower where bf16 is emulated (AVX2-only
CPUs), so "auto" decides from the machine at run time, never from the preset.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

log = logging.getLogger("data2vec")
BF16_SETTINGS = (True, False, "auto")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    """True when this CPU has AVX-512 BF16 or AMX-BF16 instructions.

    Asks torch first and falls back to the /proc/cpuinfo flags (Linux) if torch cannot tell.
    """
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in _CPU_BF16_FLAGS)


def resolve_bf16(setting: bool | str, device: torch.device) -> tuple[bool, str]:
    """Whether to train under bf16 autocast on `device`, and why (for the log).

    setting: `train.bf16` (True, False or "auto").
    """
    if setting not in BF16_SETTINGS:
        raise ValueError(f"train.bf16={setting!r}; expected true, false or auto")
    if setting != "auto":
        return bool(setting), f"train.bf16={str(setting).lower()}"
    if device.type == "cuda":
        return True, "train.bf16=auto on CUDA"
    if device.type == "cpu":
        native = cpu_has_native_bf16()
        why = "has" if native else "has no"
        return native, f"train.bf16=auto; this CPU {why} native BF16 instructions (AVX-512 BF16 / AMX)"
    return False, f"train.bf16=auto on {device.type}"


def autocast(enabled: bool, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on `device` when `enabled`, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def choose_bf16(setting: bool | str, device: torch.device) -> bool:
    """`resolve_bf16`, logging the chosen precision once (call at the start of a run)."""
    bf16, why = resolve_bf16(setting, device)
    log.info("precision: %s (%s)", "bf16 autocast" if bf16 else "fp32", why)
    return bf16
