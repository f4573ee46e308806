"""Measurement harness of the benchmarks (:mod:`stereo.bench`): timing, honest peak memory, isolation, tables.

Peak memory on CPU is the process's resident high-water mark (``VmHWM`` in ``/proc/self/status``),
reset just before the measured work by writing ``5`` to ``/proc/self/clear_refs``; every case runs in a
fresh subprocess, so nothing another case allocated (or freed into the allocator's cache) counts.
``ru_maxrss`` is not used: on Linux a child inherits its parent's value across fork and exec.
On CUDA the figure is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from stereo.config import rng
from stereo.device import cpu_facts

MiB = 2**20
GiB = 2**30


@dataclass
class MeasureConfig:
    """The timing keys every benchmark shares (each case: warm-up runs, then timed runs; tables show medians)."""

    threads: int = rng(2, ge=0, help="CPU threads per case (0 = PyTorch's default)")
    warmup: int = rng(1, ge=0, help="untimed runs before the timed ones")
    runs: int = rng(3, ge=1, help="timed runs per case; the tables show their median")


def status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of the work done between :meth:`start` and :meth:`stop`, in bytes above the start.

    CPU: resident set high-water mark (Linux). CUDA: ``torch.cuda.max_memory_allocated``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self._base = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "cuda.max_memory_allocated"
            return
        rss = status_kib("VmRSS")
        if rss is None:
            raise RuntimeError("peak memory on CPU needs Linux /proc/self/status (VmRSS, VmHWM)")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.method = "VmHWM (reset via clear_refs) - VmRSS at start"
        except OSError:
            self.method = "VmHWM - VmRSS at start (HWM not resettable: may include earlier peaks)"
        self._base = rss * 1024

    def stop(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self._base
        return (status_kib("VmHWM") or 0) * 1024 - self._base


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(fn: Callable[[], Any], device: torch.device, warmup: int = 1, runs: int = 3) -> list[float]:
    """Wall-clock seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


@dataclass
class Timing:
    """What one measurement of a case gives: the seconds of every timed run and, measured alone in its
    process, its memory. Timings of one :func:`interleave` call share their rounds, and only those are
    compared (:func:`ratio`): separate processes on a shared machine drift apart by a third."""

    times_s: list[float]
    interleaved: bool = False  # timed in turns with the other cases of its interleave() call
    peak_bytes: int | None = None  # working memory above the process once the inputs exist (alone only)
    process_peak_bytes: int | None = None  # the whole process's resident high-water mark (CPU, alone only)
    memory_method: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "median_s": self.median_s}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timing:
        return cls(**{k: v for k, v in data.items() if k != "median_s"})


def ratio(timing: Timing, base: Timing) -> float:
    """``timing``'s time over ``base``'s: the median over rounds of the ratio within a round, so both must come
    from one :func:`interleave` call; a ratio of two separate measurements is refused."""
    if not (timing.interleaved and base.interleaved) or len(timing.times_s) != len(base.times_s):
        raise ValueError("a time ratio needs two timings of one interleave() call (the same rounds)")
    return statistics.median(a / b for a, b in zip(timing.times_s, base.times_s, strict=True))


def measure(fn: Callable[[], Any], device: torch.device, warmup: int, runs: int) -> Timing:
    """The time and the memory of ``fn`` alone in this process (run it isolated: :func:`run_isolated`).

    The warm-up is inside the memory measurement: memory it leaves cached in the allocator would
    otherwise be counted in the baseline and hide part of the peak. ``process_peak_bytes`` (CPU) is the
    whole process's, comparable with figures measured as the peak RSS of a script.
    """
    mem = PeakMemory(device)
    mem.start()
    times = time_runs(fn, device, warmup=warmup, runs=runs)
    process = (status_kib("VmHWM") or 0) * 1024 if device.type == "cpu" else None
    return Timing(times, peak_bytes=mem.stop(), process_peak_bytes=process, memory_method=mem.method)


def interleave(steps: dict[str, Callable[[], Any]], device: torch.device, warmup: int, runs: int) -> dict[str, Timing]:
    """Time several steps in turns in this process: each warmed up, then ``runs`` rounds that run every step
    once, in reverse order every other round, so a slow spell of a shared machine falls on all of them alike.
    No memory (the steps share the process)."""
    for fn in steps.values():
        time_runs(fn, device, warmup=warmup, runs=0)
    times: dict[str, list[float]] = {label: [] for label in steps}
    for r in range(runs):
        for label in list(steps) if r % 2 == 0 else list(steps)[::-1]:
            times[label] += time_runs(steps[label], device, warmup=0, runs=1)
    return {label: Timing(t, interleaved=True) for label, t in times.items()}


def run_isolated(function: str, kwargs: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Call ``module:function(**kwargs)`` in a fresh Python process and return its JSON-able result.

    The child prints its result as the last line of stdout; a crash raises with the child's stderr.
    """
    module, name = function.split(":")
    code = (
        "import json, sys\n"
        f"from {module} import {name} as f\n"
        "result = f(**json.loads(sys.stdin.read()))\n"
        "print('\\n' + json.dumps(result))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(kwargs),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark case {function}({kwargs}) failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def environment() -> dict[str, Any]:
    """Facts a reader needs to interpret the numbers."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        **cpu_facts(),
    }


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table with right-aligned columns."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
