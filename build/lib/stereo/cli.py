"""``key=value`` overrides for the small scripts (benchmarks, sample generation), Hydra style."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def parse_overrides(schema: type, argv: list[str]) -> DictConfig:
    """Merge ``key=value`` arguments into a dataclass schema; unknown keys and bad types exit cleanly."""
    for arg in argv:
        if "=" not in arg:
            raise SystemExit(f"error: expected key=value overrides, got {arg!r}")
    base = OmegaConf.structured(schema)
    try:
        return OmegaConf.merge(base, OmegaConf.from_cli(argv))
    except OmegaConfBaseException as e:
        keys = ", ".join(f"{k}={_show(v)}" for k, v in OmegaConf.to_container(base).items())
        raise SystemExit(f"error: {str(e).splitlines()[0]}\nvalid keys (defaults): {keys}") from None


def _show(v: Any) -> str:
    return "null" if v is None else str(v).replace(" ", "")
