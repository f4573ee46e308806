"""Device and precision selection shared by training, evaluation, inference and benchmarks."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from pathlib import Path
from typing import Any

import torch

from stereo.config import DEVICE_PATTERN
from stereo.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags (Linux /proc/cpuinfo names: x86 AVX512-BF16 and AMX, Arm's bf16) of native bf16 arithmetic;
# without them oneDNN emulates bf16.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
CPUINFO = Path("/proc/cpuinfo")

log = logging.getLogger(__name__)


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device, checked to exist."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not re.fullmatch(DEVICE_PATTERN, name):
        raise ConfigError(f"device={name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name}: CUDA is not available on this machine (use device=cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device={name}: Apple's MPS is not available on this machine (use device=cpu or auto)")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``fp32`` (disabled), ``bf16``, ``fp16`` (CUDA only) or ``auto``
    (:func:`resolve_precision`)."""
    precision = resolve_precision(device, str(precision))
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision}: expected one of auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision=fp16 needs CUDA (this run is on {device.type}: use bf16 or fp32)")
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


# Flags a benchmark records beside its CPU model: the vector and bf16 units its numbers depend on.
BENCH_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "sve", "bf16")


def cpu_facts(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU's model name and which of :data:`BENCH_CPU_FLAGS` it has (Linux ``cpuinfo``; None where
    that file cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {"cpu_model": None, "cpu_flags": None}
    lines = text.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    flags = {f for line in lines if line.startswith(("flags", "Features")) for f in line.split()}
    return {"cpu_model": model, "cpu_flags": [f for f in BENCH_CPU_FLAGS if f in flags]}


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool | None:
    """Whether this CPU does bf16 arithmetic natively (AVX512-BF16 or AMX), read from the Linux
    ``cpuinfo`` flags; None where that file cannot be read (other systems: unknown)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags = {f for line in text.splitlines() if line.startswith(("flags", "Features")) for f in line.split()}
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: a CUDA device with bf16, or a CPU with one of
    :data:`NATIVE_BF16_FLAGS` (unknown CPUs count as not)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_native_bf16() is True


def resolve_precision(device: torch.device, precision: str) -> str:
    """``auto`` as the precision it means on ``device`` (bf16 where native, else fp32); others unchanged."""
    return ("bf16" if native_bf16(device) else "fp32") if precision == "auto" else precision


_SAID: set[str] = set()


def check_precision(device: torch.device, precision: str) -> str:
    """Validate ``precision`` for ``device`` before any work (a ConfigError names the fix) and return the
    precision to run in (``auto`` resolved, said once per process). Warns when bf16 on this CPU is
    emulated, which is many times slower than fp32 (docs/performance.md)."""
    autocast(device, precision)
    precision = str(precision)
    if precision == "auto":
        chosen = resolve_precision(device, precision)
        why = "native on this device" if chosen == "bf16" else f"no native bf16 on this {device.type}"
        line = f"precision=auto: {chosen} ({why})"
        if line not in _SAID:
            _SAID.add(line)
            log.info(line)
        return chosen
    if precision == "bf16" and device.type == "cpu" and cpu_has_native_bf16() is False:
        log.warning(
            "precision=bf16 on a CPU without native bf16 (none of the flags %s): emulated and far slower than "
            "fp32; use precision=fp32 here",
            ", ".join(NATIVE_BF16_FLAGS),
        )
    return precision
