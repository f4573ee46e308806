"""A small dependency-free progress bar for long loops (stderr, rate and ETA, quiet when not a TTY)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Wrap an iterable (or count by hand with :meth:`update`) and print ``desc n/total rate ETA``.

    On a terminal the line is redrawn in place at most ``interval`` seconds apart; elsewhere (CI, log
    files) a line is printed at most every ``log_interval`` seconds and at the end.
    """

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        interval: float = 0.2,
        log_interval: float = 30.0,
        stream=None,
        enabled: bool = True,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.enabled = enabled
        self.n = 0
        self.postfix = ""
        self.start = time.perf_counter()
        self._last = 0.0

    def __iter__(self) -> Iterator[T]:
        assert self.iterable is not None
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def set_postfix(self, text: str) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._print()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [self.desc] if self.desc else []
        if self.total:
            width = 20
            filled = int(width * min(self.n / self.total, 1.0))
            parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {self.n}/{self.total}")
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            parts.append(f"{rate:.2f} {self.unit}/s ETA {_fmt(eta)}")
        else:
            parts.append(f"{self.n} {self.unit} {rate:.2f} {self.unit}/s")
        parts.append(f"elapsed {_fmt(elapsed)}")
        if self.postfix:
            parts.append(self.postfix)
        return "  ".join(parts)

    def _print(self, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._print(final=True)
        self.enabled = False


def _fmt(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
