"""``key=value`` overrides for the small scripts (benchmarks, sample generation), Hydra style."""

from __future__ import annotations

import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def parse_overrides(schema: type, argv: list[str], doc: str | None = None) -> DictConfig:
    """Merge ``key=value`` arguments into a dataclass schema. ``--help`` prints ``doc`` (the tool's
    docstring; default: the running script's) and its keys with their defaults and help
    (:func:`stereo.config.format_help`); unknown keys, bad types and values outside a field's range
    (``stereo.config.rng``) exit with one line."""
    from stereo.config import check_config
    from stereo.errors import ConfigError

    base = OmegaConf.structured(schema)
    keys = ", ".join(f"{k}={_show(v)}" for k, v in OmegaConf.to_container(base).items())
    if any(a in ("-h", "--help") for a in argv):
        from stereo.config import format_help

        print(format_help(schema, doc=doc if doc is not None else sys.modules["__main__"].__doc__ or ""))
        raise SystemExit(0)
    for arg in argv:
        if "=" not in arg:
            raise SystemExit(f"error: expected key=value overrides (--help lists them), got {arg!r}")
    try:
        cfg = OmegaConf.merge(base, OmegaConf.from_cli(argv))
        check_config(cfg, schema)
    except OmegaConfBaseException as e:
        raise SystemExit(f"error: {str(e).splitlines()[0]}\nvalid keys (defaults): {keys}") from None
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    return cfg


def _show(v: Any) -> str:
    return "null" if v is None else str(v).replace(" ", "")
