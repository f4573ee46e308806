"""The tools' command line (benchmarks, generators, studies): Hydra overrides on a registered schema."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, TypeVar, cast

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


def repeated_keys(argv: list[str]) -> str | None:
    """One line naming the keys given more than once in ``key=value`` arguments (``+``/``++``/``~``
    prefixes aside), or None. Hydra would take the last value without a word."""
    seen: dict[str, list[str]] = {}
    for arg in argv:
        if "=" in arg:
            seen.setdefault(arg.split("=", 1)[0].lstrip("+~"), []).append(arg)
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    if not twice:
        return None
    shown = "; ".join(f"{k} ({', '.join(v)})" for k, v in twice.items())
    return f"invalid command line: key(s) given more than once: {shown}; give each once"


def unknown_keys(app: str, argv: list[str]) -> str | None:
    """One line naming the ``key=value`` arguments of an app (``train``, ``infer``, ...) whose key its
    config does not have, each with the nearest known keys, or None. Hydra's own message would suggest
    ``+key=value``, which a typed config refuses too. Group choices (``model=``, ``experiment=``) shape the
    config first; ``hydra.*`` and ``+``/``~`` arguments are left to Hydra."""
    import difflib

    from omegaconf import OmegaConf

    from stereo.config import CONF_DIR, flatten, load_config

    pairs = [a.split("=", 1) for a in argv if "=" in a and not a.startswith(("+", "~", "hydra"))]
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    try:
        cfg = load_config(app, [f"{k}={v}" for k, v in pairs if k in groups])
    except Exception:  # a bad group choice: Hydra says so itself, with the options
        return None
    unknown = [k for k, _ in pairs if k not in groups and not _has_key(cfg, k)]
    if not unknown:
        return None
    leaves = flatten(OmegaConf.to_container(cfg, throw_on_missing=False))
    known = {".".join(k.split(".")[: i + 1]) for k in leaves for i in range(k.count(".") + 1)}  # and sections
    said = []
    for k in unknown:
        near = difflib.get_close_matches(k, known, n=3, cutoff=0.6)
        said.append(f"{k}" + (f" (did you mean {' or '.join(near)}?)" if near else ""))
    return f"invalid command line: unknown key(s): {'; '.join(said)}; --help lists the keys"


def _has_key(cfg: Any, key: str) -> bool:
    """Whether dotted ``key`` is a path of the config (a mandatory ``???`` value counts; list items by index)."""
    from omegaconf import DictConfig, ListConfig

    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, DictConfig) and part in node.keys():  # `in node` is False for a `???` value
            pass
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            part = int(part)  # type: ignore[assignment]
        else:
            return False
        if i < len(parts) - 1:  # the last part may hold a mandatory ``???``, which cannot be read
            node = node[part]
    return True


S = TypeVar("S")


def parse_overrides(schema: type[S], argv: list[str], doc: str | None = None) -> S:
    """Merge ``key=value`` arguments into a dataclass schema and return it as that dataclass.

    ``--help`` prints ``doc`` (the tool's docstring; default: the running script's) and its keys with their
    defaults and help (:func:`stereo.config.format_help`); unknown keys, bad types and values outside a field's range
    (``stereo.config.rng``) exit with one line."""
    from stereo.config import to_plain, typed
    from stereo.errors import ConfigError

    keys = ", ".join(f"{k}={_show(v)}" for k, v in to_plain(OmegaConf.structured(schema)).items())
    if any(a in ("-h", "--help") for a in argv):
        from stereo.config import format_help

        print(format_help(schema, doc=doc if doc is not None else sys.modules["__main__"].__doc__ or ""))
        raise SystemExit(0)
    for arg in argv:
        if "=" not in arg:
            raise SystemExit(f"error: expected key=value overrides (--help lists them), got {arg!r}")
    if twice := repeated_keys(argv):
        raise SystemExit(f"error: {twice}")
    from hydra import compose, initialize
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException

    # The schema is registered with Hydra like the apps' schemas, and the arguments are Hydra overrides.
    name = f"tool_{schema.__module__}_{schema.__qualname__}".replace(".", "_")
    ConfigStore.instance().store(name=name, node=schema)
    # Free-form mappings (e.g. ``card={...}``) take new keys: ``++`` adds or replaces.
    free = {f.name for f in dataclasses.fields(cast(Any, schema)) if f.type in (dict, "dict")}
    argv = [f"++{a}" if a.split("=", 1)[0].split(".", 1)[0] in free and not a.startswith("+") else a for a in argv]
    try:
        with initialize(version_base=None):
            cfg = compose(name, overrides=argv)
        return typed(cfg, schema)
    except (HydraException, OmegaConfBaseException) as e:
        raise SystemExit(f"error: {_one_line(e)}\nvalid keys (defaults): {keys}") from None
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


def _one_line(e: BaseException) -> str:
    """Hydra's and OmegaConf's message and its cause in one line, without their internals."""
    parts = []
    for err in (e, e.__cause__):
        for line in str(err or "").strip().splitlines():
            line = line.strip()
            if line and not line.startswith(("full_key", "object_type", "reference_type", "To append")):
                parts.append(line)
    return " ".join(dict.fromkeys(parts)) or type(e).__name__


def _show(v: Any) -> str:
    return "null" if v is None else str(v).replace(" ", "")
