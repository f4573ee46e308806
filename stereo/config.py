"""Loading the project's Hydra configs from library code and tests (``conf/`` beside the package)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def load_config(name: str, overrides: list[str] | None = None, config_dir: str | Path = CONF_DIR) -> DictConfig:
    """Compose ``<config_dir>/<name>.yaml`` (e.g. ``model/ea_psmnet``) with Hydra overrides."""
    from hydra import compose, initialize_config_dir

    config_dir = Path(config_dir)
    if not (config_dir / f"{name}.yaml").is_file():
        options = sorted(p.relative_to(config_dir).with_suffix("").as_posix() for p in config_dir.rglob("*.yaml"))
        raise FileNotFoundError(f"no config {name!r} in {config_dir}; available: {options}")
    group, _, leaf = name.rpartition("/")
    with initialize_config_dir(str(config_dir / group) if group else str(config_dir), version_base=None):
        return compose(leaf, overrides=overrides or [])
