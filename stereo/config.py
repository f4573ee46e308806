"""Typed configs: the schemas of every entry point, their registration with Hydra, and start-up checks.

The dataclasses below are the single definition of each key: its type, its default and, in the field
metadata, its allowed range. Hydra composes ``conf/<app>.yaml`` on top of the schema registered as
``<app>_schema`` (see the ``defaults`` list of each YAML), so a wrong type (``train.batch_size=abc``) or an
unknown choice (``precision=fp8``) fails while composing, listing the valid values; :func:`check_config`
then checks ranges (``train.batch_size=-2``) and names the key, the value and what is allowed, before
any data is read or a model is built.

Architecture keys (:class:`ModelConfig`) travel with checkpoints; runtime keys (:class:`RuntimeConfig`:
device, precision, memory layout, chunking) do not, and can be changed at evaluation and inference.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from stereo.errors import ConfigError, MissingFileError


def _conf_dir() -> Path:
    """``conf/``: inside the package when installed from a wheel, beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise MissingFileError(
        f"the configs (conf/train.yaml) are neither in {here / 'conf'} nor in {here.parent / 'conf'}"
    )


CONF_DIR = _conf_dir()


class Choice(str, Enum):
    """A fixed set of string values; prints as its value, compares equal to it."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


Precision = Choice("Precision", {k: k for k in ("fp32", "bf16", "fp16")})
RenderPass = Choice("RenderPass", {k: k for k in ("clean", "final", "both")})
Mask = Choice("Mask", {k: k for k in ("positive", "absolute", "below")})
Averaging = Choice("Averaging", {k: k for k in ("image", "pixel")})
Volume = Choice("Volume", {k: k for k in ("concat", "gwc")})
Refine = Choice("Refine", {k: k for k in ("none", "residual")})
Normalization = Choice("Normalization", {k: k for k in ("softmax", "scaling")})
LrSchedule = Choice("LrSchedule", {k: k for k in ("constant", "cosine", "step")})
ColorRange = Choice("ColorRange", {k: k for k in ("image", "fixed")})

# One default evaluation protocol for validation during training and for stereo-eval.
EVAL_PASS, EVAL_MASK, EVAL_AVERAGING = RenderPass.final, Mask.positive, Averaging.image
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"


def rng(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None, le: float | None = None, **kw):
    """A dataclass field with an allowed range, checked by :func:`check_config`."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={**meta, **kw})
    return field(default=default, metadata={**meta, **kw})


def lst(default: list) -> Any:
    return field(default_factory=lambda: list(default))


# ---- model (architecture only: what a checkpoint must reproduce) ----------------------------------------


@dataclass
class AttentionConfig:
    position: str = "layer4"  # firstconv | layer1 (1/2 resolution) | layer2 | layer3 | layer4 (1/4)
    kind: str = "efficient"  # a name in stereo.attention.ATTENTION_KINDS
    normalization: Normalization = Normalization.softmax
    key_channels: int = rng(64, ge=1)
    value_channels: int = rng(128, ge=1)
    heads: int = rng(1, ge=1)
    latents: int = rng(64, ge=1)  # kind=latent: M learned latents
    latent_layers: int = rng(1, ge=0)  # kind=latent: self-attention rounds among the latents
    scales: list[int] = rng([1, 2, 4, 8], ge=1)  # kind=multires: pooling per head (len = heads)


@dataclass
class FeatureConfig:
    base_channels: int = rng(32, ge=1)  # firstconv/layer1 width; layer2 x2, layer3/layer4 x4
    blocks: list[int] = rng([3, 16, 3, 3], ge=1, length=4)  # BasicBlocks in layer1..layer4
    pool_sizes: list[int] = rng([64, 32, 16, 8], ge=1)  # spatial pyramid pooling at 1/4 resolution
    out_channels: int = rng(32, ge=1)
    attention: list[AttentionConfig] = lst([])


@dataclass
class ModelConfig:
    name: str = "psmnet"  # a label (the YAML's name); the architecture is `arch`
    arch: str = "psmnet"  # a name in stereo.models.ARCHITECTURES
    max_disp: int = rng(192, ge=16, multiple=16)  # pixels
    volume: Volume = Volume.concat
    gwc_groups: int = rng(32, ge=1)
    volume_channels: int = rng(32, ge=1)
    hourglasses: int = rng(3, ge=1)  # stacked hourglasses = output heads
    feature: FeatureConfig = field(default_factory=FeatureConfig)
    # none (PSMNet) | residual: a full-resolution residual guided by the left image (models/refinement.py)
    refine: Refine = Refine.none


# ---- runtime (how to run, never frozen into a checkpoint) -------------------------------------------------


@dataclass
class RuntimeConfig:
    device: str = rng(
        "auto", pattern=DEVICE_PATTERN, expect="auto, cpu, cuda, cuda:N or mps"
    )  # auto | cpu | cuda | cuda:N | mps
    precision: Precision = Precision.fp32  # fp32 | bf16 | fp16 (CUDA)
    channels_last: bool = False  # 2-D feature extractor in channels_last
    channels_last_3d: bool = True  # cost volume and 3-D network channels-last (faster on CPU)
    eval_chunk_rows: int = rng(64, ge=0)  # eval: rows per chunk of the final upsampling; 0 = all at once
    # eval: a frame whose 3-D part would need more runs in bands of rows (same result); null = no limit
    memory_budget_gb: float | None = rng(8.0, gt=0)
    fold_batchnorm: bool = True  # eval/infer: BatchNorm folded into the convolutions (same result, faster)
    early_exit: str = rng("off", pattern="off|confidence|head", expect="off, confidence or head")
    exit_threshold: float = rng(0.9, gt=0, le=1)  # early_exit=confidence: mean peak probability to stop at
    exit_head: int = rng(1, ge=1)  # early_exit=head: the head that always answers


RUNTIME_KEYS = tuple(f.name for f in dataclasses.fields(RuntimeConfig))


def runtime_config(source: Any = None, **changes: Any) -> RuntimeConfig:
    """The runtime settings held by ``source`` (a :class:`RuntimeConfig`, an app config or any mapping or
    object with some of its keys; None = the defaults), with ``changes`` over them, range-checked: the one
    way runtime settings reach a model, so each default is the schema's."""
    unknown = sorted(set(changes) - set(RUNTIME_KEYS))
    if unknown:
        raise ConfigError(f"unknown runtime setting(s) {', '.join(unknown)}; expected {', '.join(RUNTIME_KEYS)}")
    if source is None:
        values = {}
    elif isinstance(source, (dict, DictConfig)):
        values = {k: source[k] for k in RUNTIME_KEYS if k in source}
    else:
        values = {k: getattr(source, k) for k in RUNTIME_KEYS if hasattr(source, k)}
    values.update(changes)
    if "precision" in values:
        try:
            values["precision"] = Precision(str(values["precision"]))
        except ValueError:
            raise ConfigError(
                f"precision={values['precision']}: expected {', '.join(p.value for p in Precision)}"
            ) from None
    runtime = RuntimeConfig(**values)
    errors = _walk(RuntimeConfig, runtime, "")
    if errors:
        raise ConfigError("invalid runtime settings: " + "; ".join(errors))
    return runtime


# ---- data -------------------------------------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """Photometric and occlusion augmentation (after cropping; never moves pixels)."""

    enabled: bool = True
    photometric_prob: float = rng(1.0, ge=0, le=1)
    brightness: float = rng(0.4, ge=0, le=1)  # factors drawn from [1 - x, 1 + x]
    contrast: float = rng(0.4, ge=0, le=1)
    saturation: float = rng(0.4, ge=0, le=1)
    gamma: list[float] = rng([0.8, 1.2], gt=0, length=2)
    asymmetric_prob: float = rng(0.2, ge=0, le=1)  # the right view gets its own draw
    eraser_prob: float = rng(0.5, ge=0, le=1)  # eraser patches on the right view
    eraser_max_patches: int = rng(2, ge=1)
    eraser_size: list[float] = rng([0.1, 0.2], gt=0, le=1, length=2)  # patch side / crop width


@dataclass
class DataConfig:
    name: str = "sceneflow"  # a name in stereo.data.DATASETS
    root: str = "datasets/SceneFlow"
    render_pass: RenderPass = RenderPass.clean
    crop_size: list[int] = rng([256, 512], ge=16, multiple=16, length=2)  # training crop (H, W)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    skip_missing: bool = False  # skip incomplete pairs with a warning instead of failing
    limit: int = rng(-1, ge=-1)  # use the first N pairs; -1 = all
    region: str = rng("all", pattern="all|nonocc", expect="all or nonocc")  # real benchmarks: evaluated pixels
    # Real benchmarks (kitti, middlebury, eth3d): training holds out the last val_fraction of the pairs in
    # sorted order (KITTI 2015: frames 160-199) for validation, or the names listed in val_names (a text file)
    val_fraction: float = rng(0.2, gt=0, le=0.9)
    val_names: str | None = None


# ---- applications -----------------------------------------------------------------------------------------


@dataclass
class OptimConfig:
    batch_size: int = rng(24, ge=1)  # per optimizer step, per process
    lr: float = rng(2.0e-3, gt=0)
    betas: list[float] = rng([0.9, 0.999], ge=0, le=1, length=2)
    weight_decay: float = rng(0.0, ge=0)
    epochs: int = rng(100, ge=0)
    max_steps: int | None = rng(None, ge=0)  # overrides epochs
    lr_schedule: LrSchedule = LrSchedule.constant
    lr_decay_steps: list[int] = rng([], ge=1)  # lr_schedule=step: multiply the rate by lr_decay at these steps
    lr_decay: float = rng(0.1, gt=0, le=1)
    warmup_steps: int = rng(0, ge=0)
    grad_clip: float | None = rng(None, gt=0)
    loss_weights: list[float] | None = rng(None, ge=0)  # per head; null = PSMNet's 0.5/0.7/1.0 (last ones)
    num_workers: int = rng(4, ge=0)
    log_every: int = rng(50, ge=1)
    image_every: int = rng(1000, ge=0)
    val_every: int = rng(5000, ge=0)
    ckpt_every: int = rng(1000, ge=0)
    resume: bool = False
    # start from these weights (a stereo checkpoint; no optimizer or step state); resume takes precedence
    init_from: str | None = None
    # modules whose weights (and BatchNorm statistics) stay as loaded, e.g. [feature_extraction]
    freeze: list[str] = lst([])
    # BatchNorm layers use and keep their running statistics (small-batch fine-tuning); affine weights train
    bn_eval: bool = False
    max_nonfinite: int = rng(10, ge=1)  # stop after this many non-finite losses in a row
    max_no_valid: int = rng(10, ge=1)  # stop after this many batches without a valid pixel in a row
    sync_bn: bool = False


@dataclass
class ValConfig:
    limit: int = rng(200, ge=-1)  # test pairs used for validation; -1 = all, 0 = none
    root: str | None = None  # another dataset root (same data.name) to validate on; null = data.root
    max_disp: float | None = rng(None, gt=0)  # mask bound; null = the model's max_disp
    render_pass: RenderPass = EVAL_PASS
    mask: Mask = EVAL_MASK
    averaging: Averaging = EVAL_AVERAGING


@dataclass
class TrainAppConfig(RuntimeConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)
    seed: int = 0
    deterministic: bool = False


Method = Choice("Method", {k: k for k in ("checkpoint", "sgbm")})


@dataclass
class SgbmConfig:
    """OpenCV StereoSGBM settings (``stereo-eval method=sgbm``); see :class:`stereo.sgbm.SGBMStereo`."""

    num_disparities: int | None = rng(None, ge=16)  # search range; null = max_disp or 192; rounded up to x16
    block_size: int = rng(5, ge=1, pattern=r"\d*[13579]", expect="an odd number")  # OpenCV matches odd blocks
    p1: int | None = rng(None, ge=0)  # null = 8 x 3 x block_size^2
    p2: int | None = rng(None, ge=0)  # null = 32 x 3 x block_size^2
    uniqueness: int = rng(10, ge=0)
    speckle_window: int = rng(100, ge=0)
    speckle_range: int = rng(2, ge=0)
    disp12_max_diff: int = rng(1, ge=-1)
    prefilter_cap: int = rng(63, ge=1)
    mode: str = rng("sgbm_3way", pattern="sgbm|hh|sgbm_3way|hh4", expect="sgbm, hh, sgbm_3way or hh4")


@dataclass
class EvalAppConfig(RuntimeConfig):
    method: Method = Method.checkpoint  # checkpoint: a trained network | sgbm: OpenCV's SGBM baseline
    sgbm: SgbmConfig = field(default_factory=SgbmConfig)
    checkpoint: str | None = None  # method=checkpoint; null = the weights shipped with the package
    data: DataConfig = field(default_factory=lambda: DataConfig(render_pass=EVAL_PASS))
    mask: Mask = EVAL_MASK
    max_disp: float | None = rng(None, gt=0)  # mask bound; null = the model's max_disp
    averaging: Averaging = EVAL_AVERAGING
    per_image_csv: bool = False
    worst_k: int = rng(0, ge=0)


@dataclass
class InferAppConfig(RuntimeConfig):
    backend: str = rng("torch", pattern="torch|onnxruntime", expect="torch or onnxruntime")
    onnx: str | None = None  # backend=onnxruntime: an .onnx file from stereo-export
    checkpoint: str | None = None  # null = the weights shipped with the package
    left: str = MISSING
    right: str = MISSING
    output_dir: str | None = None
    scale: float = rng(1.0, gt=0, le=1)
    color_range: ColorRange = ColorRange.image
    color_max: float | None = rng(None, gt=0)
    focal_px: float | None = rng(None, gt=0)
    baseline: float | None = rng(None, gt=0)
    calib: str | None = None  # Middlebury/ETH3D calib.txt or a KITTI calibration file (P2/P3)
    cx: float | None = None  # principal point, pixels; null = from calib, else the image centre
    cy: float | None = None
    doffs: float | None = None  # x-difference of the principal points (Middlebury), pixels; null = calib or 0
    point_cloud: bool = False  # also write <name>.ply (needs a calibration)
    max_depth: float | None = rng(None, gt=0)  # point cloud: drop points farther than this
    confidence: bool = False  # also write <name>_confidence.pfm and .png (in [0, 1])
    min_confidence: float = rng(0.0, ge=0, le=1)  # point cloud: drop pixels less confident than this


@dataclass
class ExportAppConfig:
    checkpoint: str | None = None  # null = the weights shipped with the package
    output: str = MISSING  # the .onnx file to write
    opset: int = rng(17, ge=13)


SCHEMAS = {"train": TrainAppConfig, "eval": EvalAppConfig, "infer": InferAppConfig, "export": ExportAppConfig}
_GROUP_SCHEMAS = {"model": ModelConfig, "data": DataConfig}


def register_schemas() -> None:
    """Store the schemas in Hydra's ConfigStore (``train_schema``, ...); idempotent."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=schema)


register_schemas()


# ---- checks -----------------------------------------------------------------------------------------------


def _check_value(key: str, value: Any, meta: dict) -> list[str]:
    if value is None:
        return []
    errors = []
    if "length" in meta and len(value) != meta["length"]:
        errors.append(f"{key}={_show(value)}: expected {meta['length']} values")
    for v in value if isinstance(value, (list, tuple, ListConfig)) else [value]:
        if isinstance(v, float) and not math.isfinite(v):  # NaN passes every comparison; inf is no setting
            errors.append(f"{key}={_show(value)}: must be a finite number")
            continue
        if "pattern" in meta and not re.fullmatch(meta["pattern"], str(v)):
            errors.append(f"{key}={v}: expected {meta.get('expect', meta['pattern'])}")
        if "ge" in meta and v < meta["ge"]:
            errors.append(f"{key}={_show(value)}: must be >= {meta['ge']}")
        elif "gt" in meta and v <= meta["gt"]:
            errors.append(f"{key}={_show(value)}: must be > {meta['gt']}")
        if "le" in meta and v > meta["le"]:
            errors.append(f"{key}={_show(value)}: must be <= {meta['le']}")
        if "multiple" in meta and v % meta["multiple"]:
            errors.append(f"{key}={_show(value)}: must be a multiple of {meta['multiple']}")
    return sorted(set(errors), key=errors.index)


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _walk(schema: type, node: Any, prefix: str) -> list[str]:
    errors = []
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        value = node.get(f.name) if isinstance(node, (dict, DictConfig)) else getattr(node, f.name, None)
        if dataclasses.is_dataclass(f.default_factory() if f.default_factory is not dataclasses.MISSING else None):
            sub = type(f.default_factory())
            errors += _walk(sub, value or {}, f"{key}.")
        elif f.name == "attention":
            for i, spec in enumerate(value or []):
                errors += _walk(AttentionConfig, spec, f"{key}.{i}.")
        else:
            errors += _check_value(key, value, dict(f.metadata))
    return errors


def check_config(cfg: DictConfig, schema: type) -> None:
    """Raise :class:`ConfigError` listing every missing key and out-of-range value of ``cfg``."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    errors = [f"{k} is required (add {k}=...)" for k in missing]
    errors += _walk(schema, cfg, "")
    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors))


def to_plain(cfg: Any) -> Any:
    """A DictConfig/ListConfig (or dataclass) as plain dicts and lists, enums as their string values."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if dataclasses.is_dataclass(cfg):
        return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    if isinstance(cfg, (list, tuple)):
        return [to_plain(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, Enum):
        return cfg.value
    return cfg


def load_config(name: str, overrides: list[str] | None = None, config_dir: str | Path = CONF_DIR) -> DictConfig:
    """Compose ``<config_dir>/<name>.yaml`` (an app such as ``train``, or a group entry such as
    ``model/ea_psmnet``) with Hydra overrides, typed by its schema."""
    from hydra import compose, initialize_config_dir

    config_dir = Path(config_dir)
    if not (config_dir / f"{name}.yaml").is_file():
        options = sorted(p.relative_to(config_dir).with_suffix("").as_posix() for p in config_dir.rglob("*.yaml"))
        raise MissingFileError(f"no config {name!r} in {config_dir}; available: {options}")
    group, _, leaf = name.rpartition("/")
    with initialize_config_dir(str(config_dir / group) if group else str(config_dir), version_base=None):
        cfg = compose(leaf, overrides=overrides or [])
    if group in _GROUP_SCHEMAS:
        cfg = OmegaConf.merge(OmegaConf.structured(_GROUP_SCHEMAS[group]), cfg)
    return cfg
