"""Progress bars (tqdm) with one set of defaults: redrawn in place on a terminal, a line every 30 s in logs."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress(
    iterable: Iterable[Any] | None = None,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
) -> tqdm:
    """A tqdm bar on stderr. ``initial`` starts the count there (a resumed run): the rate and ETA count
    only the work done in this process."""
    tty = sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=not enabled,
        mininterval=0.2 if tty else 30.0,
        dynamic_ncols=tty,
        file=sys.stderr,
    )
