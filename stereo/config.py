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

import contextlib
import dataclasses
import inspect
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, cast

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

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


class Precision(Choice):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class RenderPass(Choice):
    clean = "clean"
    final = "final"
    both = "both"


class Mask(Choice):
    positive = "positive"
    absolute = "absolute"
    below = "below"


class Averaging(Choice):
    image = "image"
    pixel = "pixel"


class Volume(Choice):
    concat = "concat"
    gwc = "gwc"


class Refine(Choice):
    none = "none"
    modes = "modes"


class Subpixel(Choice):
    none = "none"
    match = "match"


class Select(Choice):
    none = "none"
    learned = "learned"


class Loss(Choice):
    smooth_l1 = "smooth_l1"
    l1 = "l1"
    photometric = "photometric"


class Normalization(Choice):
    softmax = "softmax"
    scaling = "scaling"


class LrSchedule(Choice):
    constant = "constant"
    cosine = "cosine"
    step = "step"


class ColorRange(Choice):
    image = "image"
    fixed = "fixed"


class EarlyExit(Choice):
    off = "off"
    confidence = "confidence"
    head = "head"


class Layout(Choice):
    pair = "pair"
    sbs = "sbs"
    tb = "tb"


class RectifyMode(Choice):
    auto = "auto"
    calib = "calib"
    matches = "matches"
    off = "off"


class Check(Choice):
    warn = "warn"
    error = "error"
    off = "off"


class Backend(Choice):
    torch = "torch"
    onnxruntime = "onnxruntime"


# How far from a ground-truth depth edge a pixel counts as "at the edge" (data.region=edges):
# 2 px covers the fattened border that a 1/4-resolution cost volume smears over, and sub-pixel thin structures.
EDGE_RADIUS = 2


class Region(Choice):
    all = "all"
    nonocc = "nonocc"
    occluded = "occluded"
    edges = "edges"
    textured = "textured"
    lowtexture = "lowtexture"


class Regression(Choice):
    soft_argmin = "soft_argmin"
    local = "local"


class Polish(Choice):
    none = "none"
    zncc = "zncc"


class SgbmMode(Choice):
    sgbm = "sgbm"
    hh = "hh"
    sgbm_3way = "sgbm_3way"
    hh4 = "hh4"


# One default evaluation protocol for validation during training and for stereo-eval.
EVAL_PASS, EVAL_MASK, EVAL_AVERAGING = RenderPass.final, Mask.positive, Averaging.image
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"


def rng(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None, le: float | None = None, **kw):
    """A dataclass field with its help text (``help=``, shown by ``--help``) and its allowed range
    (``ge``, ``gt``, ``le``, ``pattern``, ``multiple``, ``length``), checked by :func:`check_config`."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={**meta, **kw})
    return field(default=default, metadata={**meta, **kw})


# ---- model (architecture only: what a checkpoint must reproduce) ----------------------------------------


@dataclass
class AttentionConfig:
    position: str = rng("layer4", help="firstconv | layer1 (1/2 resolution) | layer2 | layer3 | layer4 (1/4)")
    kind: str = rng("efficient", help="a name in stereo.models.attention.ATTENTION_KINDS")
    normalization: Normalization = rng(
        Normalization.softmax, help="softmax (keys over positions, queries over channels) | scaling (1/n)"
    )
    key_channels: int = rng(64, ge=1, help="d_k, channels of queries and keys (split over heads)")
    value_channels: int = rng(128, ge=1, help="d_v, channels of values (split over heads)")
    heads: int = rng(1, ge=1, help="attention heads; must divide key_channels and value_channels")
    latents: int = rng(64, ge=1, help="kind=latent: M learned latents")
    latent_layers: int = rng(1, ge=0, help="kind=latent: self-attention rounds among the latents")
    scales: list[int] = rng([1, 2, 4, 8], ge=1, help="kind=multires: pooling per head (len = heads)")


@dataclass
class FeatureConfig:
    base_channels: int = rng(32, ge=1, help="firstconv/layer1 width; layer2 x2, layer3/layer4 x4")
    blocks: list[int] = rng([3, 16, 3, 3], ge=1, length=4, help="BasicBlocks in layer1..layer4")
    pool_sizes: list[int] = rng([64, 32, 16, 8], ge=1, help="spatial pyramid pooling at 1/4 resolution")
    out_channels: int = rng(32, ge=1, help="channels of the feature map that builds the cost volume")
    attention: list[AttentionConfig] = rng([], help="attention modules, each at its position (see attention.*)")


@dataclass
class ModelConfig:
    name: str = rng("psmnet", help="a label (the YAML's name); the architecture is `arch`")
    arch: str = rng("psmnet", help="the network family (stereo.models.ARCHITECTURES)")
    max_disp: int = rng(192, ge=16, multiple=16, help="pixels; a multiple of 16 (of 32 with downsample=8)")
    downsample: int = rng(
        4,
        pattern="4|8",
        expect="4 or 8",
        help="features and cost volume at 1/downsample of the image: 4 (PSMNet) | 8 (an eighth of the 3-D work)",
    )
    volume: Volume = rng(Volume.concat, help="concat (PSMNet) | gwc (group-wise correlation, GwcNet)")
    gwc_groups: int = rng(32, ge=1, help="used when volume=gwc")
    volume_channels: int = rng(32, ge=1, help="channels of the 3-D network")
    hourglasses: int = rng(3, ge=1, help="stacked hourglasses = output heads")
    feature: FeatureConfig = field(default_factory=FeatureConfig)
    refine: Refine = rng(
        Refine.none,
        help="none (PSMNet) | modes: a full-resolution residual guided by the left image, the photometric error "
        "of the right image warped by the disparity and the windowed estimate around the most likely "
        "disparity, chosen per pixel by a gate (models/refinement.py)",
    )
    refine_channels: int = rng(
        16,
        ge=1,
        help="width of refine=modes' full-resolution convolutions (16: the shipped weights; time grows with its "
        "square)",
    )
    subpixel: Subpixel = rng(
        Subpixel.none,
        help="none | match: learned full-resolution sub-pixel matching after the refinement: light features of "
        "both views correlated at quarter-pixel offsets within 1.5 px of the disparity, a bounded residual "
        "(models/subpixel.py)",
    )
    subpixel_steps: int = rng(1, ge=1, help="subpixel=match: updates with shared weights, each from the last")
    subpixel_select: Select = rng(
        Select.none,
        help="none | learned (subpixel=match): after the updates, each pixel's disparity moves towards a learned "
        "mixture of its own and its neighbours' (2-8 px away), weighed by how well the views match at each "
        "(models/selection.py)",
    )
    subpixel_rounds: int = rng(
        0,
        ge=0,
        help="subpixel_select=learned: after the updates and the choice, rounds of one more update and one more "
        "choice, with the same weights (a choice mends a patch, the update then refines it at the pixel)",
    )


# ---- runtime (how to run, never frozen into a checkpoint) -------------------------------------------------


@dataclass
class RuntimeConfig:
    device: str = rng(
        "auto",
        pattern=DEVICE_PATTERN,
        expect="auto, cpu, cuda, cuda:N or mps",
        help="auto (CUDA if present) | cpu | cuda | cuda:N | mps",
    )
    precision: Precision = rng(
        Precision.fp32,
        help="fp32 | bf16 (CPU and CUDA) | fp16 (CUDA, with a grad scaler) | auto: bf16 where it is native (CPUs with "
        "AVX512-BF16, AMX or Arm bf16; CUDA devices with bf16), fp32 elsewhere, never emulated",
    )
    channels_last: bool = rng(
        True, help="2-D feature extractor channels-last (measured faster on CPU in fp32 and far faster in bf16)"
    )
    channels_last_3d: bool = rng(True, help="cost volume and 3-D network channels-last (measured faster on CPU)")
    eval_chunk_rows: int = rng(
        64, ge=0, help="eval: rows per chunk of the final upsampling (bounds peak memory); 0 = all at once"
    )
    memory_budget_gb: float | None = rng(
        8.0,
        gt=0,
        help="eval: the peak a prediction may need: the 3-D part runs in bands of rows (same result) within what "
        "the full-resolution part leaves; stereo-infer and the API refuse a pair that cannot fit; null = no limit",
    )
    fold_batchnorm: bool = rng(True, help="BatchNorm folded into the convolutions (same result up to rounding, faster)")
    early_exit: EarlyExit = rng(
        EarlyExit.off, help="eval: off (every head) | confidence (stop at exit_threshold) | head (always exit_head)"
    )
    exit_threshold: float = rng(0.9, gt=0, le=1, help="early_exit=confidence: mean peak probability to stop at")
    exit_head: int = rng(1, ge=1, help="early_exit=head: the head that always answers")
    regression: Regression = rng(
        Regression.soft_argmin,
        help="eval: soft_argmin (PSMNet's expectation over every disparity) | local (only within "
        "regression_radius of the most likely one: sharper edges, fewer bad-N pixels)",
    )
    regression_radius: float = rng(8.0, gt=0, help="regression=local: the window's half-width in pixels")
    refinement: bool = rng(
        True,
        help="eval: apply the model's sub-pixel refinement (model.refine) and stage (model.subpixel); false answers "
        "with the network's regression alone, which regression=local may then replace",
    )
    polish: Polish = rng(
        Polish.none,
        help="eval: none | zncc: a classical sub-pixel step after the network, no training (models/polish.py): "
        "ZNCC of 7x7 windows at the disparity -2..+2 px in quarter pixels, a parabola through the best three; "
        "a pixel moves only where the best correlation reaches polish_min_zncc",
    )
    polish_min_zncc: float = rng(0.9, gt=0, le=1, help="polish=zncc: the correlation a pixel needs to move")
    subpixel_steps: int | None = rng(
        None,
        ge=1,
        help="eval: updates of the model's sub-pixel stage (model.subpixel=match), each from the last; null = as "
        "trained (model.subpixel_steps: 2 for the shipped weights). 1 is faster, 3 reaches further (1.5 px each)",
    )
    subpixel_rounds: int | None = rng(
        None,
        ge=0,
        help="eval: rounds of one more update and one more learned choice after the sub-pixel stage's updates and "
        "choice (model.subpixel_select=learned); null = as trained (model.subpixel_rounds)",
    )
    propagate: int = rng(
        0,
        ge=0,
        help="eval: rounds of propagation after the sub-pixel stage (model.subpixel=match; models/propagation.py): "
        "each pixel takes the disparity of a neighbour 2-8 px away where the stage's features match better "
        "there, which mends the band beside depth edges; no training; 0 = off (1 helps on generated-v3's "
        "photographs and harms rendered scenes: docs/inference.md)",
    )


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
    try:  # types and closed sets (a string becomes its enum) as for every config
        runtime = cast(RuntimeConfig, OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RuntimeConfig), values)))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key}={values.get(str(e.full_key))}: {str(e).splitlines()[0]}") from None
    errors = _walk(RuntimeConfig, values, "")  # the values as given, so the message shows them
    if errors:
        raise ConfigError("invalid runtime settings: " + "; ".join(errors))
    for line in unused_runtime_settings(runtime):
        if line not in _WARNED:
            _WARNED.add(line)
            logging.getLogger("stereo").warning(line)
    return runtime


_WARNED: set[str] = set()  # each no-effect warning once per process (runtime_config runs several times a run)
_RUNTIME_DEFAULTS = RuntimeConfig()


def unused_runtime_settings(runtime: RuntimeConfig) -> list[str]:
    """One line for each runtime setting changed from its default that has no effect with the others."""
    d, r = _RUNTIME_DEFAULTS, runtime
    lines = []
    if r.exit_head != d.exit_head and r.early_exit != EarlyExit.head:
        lines.append(f"exit_head={r.exit_head} has no effect with early_exit={r.early_exit} (it needs early_exit=head)")
    if r.exit_threshold != d.exit_threshold and r.early_exit != EarlyExit.confidence:
        lines.append(f"exit_threshold={r.exit_threshold:g} has no effect with early_exit={r.early_exit} (it needs "
                     "early_exit=confidence)")  # fmt: skip
    if r.regression_radius != d.regression_radius and r.regression != Regression.local:
        lines.append(f"regression_radius={r.regression_radius:g} has no effect with regression={r.regression} (it "
                     "needs regression=local)")  # fmt: skip
    if r.polish_min_zncc != d.polish_min_zncc and r.polish != Polish.zncc:
        lines.append(f"polish_min_zncc={r.polish_min_zncc:g} has no effect with polish={r.polish} (it needs "
                     "polish=zncc)")  # fmt: skip
    for key in ("subpixel_steps", "subpixel_rounds", "propagate"):
        if getattr(r, key) != getattr(d, key) and not r.refinement:
            lines.append(f"{key}={getattr(r, key)} has no effect with refinement=false (the sub-pixel stage does "
                         "not run)")  # fmt: skip
    return lines


# ---- data -------------------------------------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """Photometric and occlusion augmentation (after cropping; never moves pixels)."""

    enabled: bool = rng(True, help="photometric jitter (asymmetric at times) + eraser patch on the right view")
    photometric_prob: float = rng(1.0, ge=0, le=1, help="chance of the photometric jitter per pair")
    brightness: float = rng(0.4, ge=0, le=1, help="factors drawn from [1 - x, 1 + x]")
    contrast: float = rng(0.4, ge=0, le=1, help="as brightness")
    saturation: float = rng(0.4, ge=0, le=1, help="as brightness")
    gamma: list[float] = rng([0.8, 1.2], gt=0, length=2, help="gamma drawn from [lo, hi]")
    asymmetric_prob: float = rng(0.2, ge=0, le=1, help="the right view gets its own draw")
    eraser_prob: float = rng(0.5, ge=0, le=1, help="eraser patches on the right view")
    eraser_max_patches: int = rng(2, ge=1, help="1..this many patches")
    eraser_size: list[float] = rng([0.1, 0.2], gt=0, le=1, length=2, help="patch side / crop width")


@dataclass
class DataConfig:
    name: str = rng("sceneflow", help="the dataset class (stereo.data.DATASETS)")
    root: str = rng("datasets/SceneFlow", help="the dataset's folder")
    extra_roots: list[str] = rng(
        [], help="more folders of the same dataset kind whose pairs join data.root's (a training mix), e.g. [a, b]"
    )
    render_pass: RenderPass = rng(
        RenderPass.clean, help="clean | final (frames_cleanpass / frames_finalpass) | both (every pair in each pass)"
    )
    crop_size: list[int] = rng([256, 512], ge=16, multiple=16, length=2, help="training crop (H, W), multiples of 16")
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    skip_missing: bool = rng(False, help="true: skip pairs lacking a right image or disparity, with a warning")
    limit: int = rng(-1, ge=-1, help="use the first N pairs only; -1 = all")
    region: Region = rng(
        Region.all,
        help="all (every pixel with ground truth) | nonocc: visible in both views (KITTI disp_noc, Middlebury/ETH3D "
        "mask0nocc, Scene Flow: where the right view's disparity confirms the left one) | occluded: the pixels with "
        "ground truth that nonocc leaves out (hidden in the right view) | edges: within "
        "edge_radius of a depth edge of the ground truth (borders and thin structures; dense ground truth only) | "
        "lowtexture / textured: where the left image is textureless or not (Scharstein and Szeliski's definition: "
        "the squared horizontal intensity gradient, averaged over 3x3, below 4 grey levels^2)",
    )
    edge_radius: int = rng(
        EDGE_RADIUS, ge=0, help="region=edges: how far from a depth edge (4-neighbours > 1 px apart) a pixel counts, px"
    )
    val_fraction: float = rng(
        0.2,
        gt=0,
        le=0.9,
        help="real benchmarks: training validates on the last val_fraction of the sorted pairs (KITTI: 160-199)",
    )
    val_names: str | None = rng(None, help="real benchmarks: a text file of the pair names to validate on instead")


# ---- applications -----------------------------------------------------------------------------------------


@dataclass
class OptimConfig:
    batch_size: int = rng(24, ge=1, help="per optimizer step, per process (DDP: total = batch_size x processes)")
    micro_batch: int | None = rng(
        None,
        ge=1,
        help="pairs per forward pass (divides batch_size): the batch's gradient is accumulated over its parts, "
        "for batches that do not fit in memory; BatchNorm normalises each part (train.bn_eval: exactly the batch)",
    )
    lr: float = rng(2.0e-3, gt=0, help="Adam learning rate (the paper's EA-PSMNet recipe: 2e-3, batch 24)")
    betas: list[float] = rng([0.9, 0.999], ge=0, le=1, length=2, help="Adam betas")
    weight_decay: float = rng(0.0, ge=0, help="Adam weight decay")
    epochs: int = rng(100, ge=0, help="passes over the training pairs (max_steps overrides)")
    max_steps: int | None = rng(None, ge=0, help="if set, overrides epochs")
    time_budget: float | None = rng(
        None,
        gt=0,
        help="minutes of training steps (validation not counted): the run's length, and so its lr schedule, is "
        "sized from the step rate measured over its first steps; max_steps/epochs stay the upper bound",
    )
    lr_schedule: LrSchedule = rng(
        LrSchedule.constant, help="constant (PSMNet's) | cosine (to zero at the last step) | step"
    )
    lr_decay_steps: list[int] = rng([], ge=1, help="lr_schedule=step: multiply the rate by lr_decay at these steps")
    lr_decay: float = rng(0.1, gt=0, le=1, help="lr_schedule=step: the factor at each of lr_decay_steps")
    warmup_steps: int = rng(0, ge=0, help="linear warm-up")
    grad_clip: float | None = rng(None, gt=0, help="max gradient norm, or null")
    loss_weights: list[float] | None = rng(
        None, ge=0, help="loss weight per head (train.loss); null = the last heads of PSMNet's 0.5, 0.7, 1.0"
    )
    loss: Loss = rng(
        Loss.smooth_l1,
        help="loss of every head: smooth_l1 (PSMNet's, on the ground truth) | l1 (on the ground truth: a constant "
        "pull however small the error, for sub-pixel stages; smooth L1's fades below 1 px) | photometric "
        "(self-supervised, no ground truth: the left view reconstructed from the right, SSIM + L1 over the visible "
        "pixels, edge-aware smoothness; stereo/losses.py)",
    )
    loss_max_error: float | None = rng(
        None,
        gt=0,
        help="loss=smooth_l1 or l1: leave out of each head's loss the pixels it misses by this many pixels or more "
        "(a truncated loss for a stage that moves a disparity a little, e.g. model.subpixel); null = every pixel",
    )
    num_workers: int = rng(4, ge=0, help="DataLoader processes (0 = load in the training process)")
    log_every: int = rng(50, ge=1, help="steps between scalar logs")
    image_every: int = rng(1000, ge=0, help="steps between TensorBoard image panels (0 = never)")
    val_every: int = rng(5000, ge=0, help="steps between validations (also once at the end; 0 = only at the end)")
    ckpt_every: int = rng(
        1000, ge=0, help="steps between writes of checkpoints/last.pt (also at the end and on any stop)"
    )
    resume: bool = rng(False, help="continue from <run dir>/checkpoints/last.pt")
    init_from: str | None = rng(
        None,
        help="start from these weights (a stereo checkpoint, or shipped: the package's; no optimizer or step "
        "state); resume takes precedence",
    )
    freeze: list[str] = rng(
        [], help="modules whose weights (and BatchNorm statistics) stay as loaded, e.g. [feature_extraction]"
    )
    bn_eval: bool = rng(
        False,
        help="BatchNorm layers use and keep their running statistics (small-batch fine-tuning); affine weights train",
    )
    cache_frozen: bool = rng(
        False,
        help="with every module but model.subpixel frozen: the frozen network's full-frame answer for each training "
        "pair is computed once (kept in the run folder) and the stage trains on crops of it, each step costing "
        "the stage alone; needs data.augment.enabled=false",
    )
    max_nonfinite: int = rng(10, ge=1, help="stop (with a checkpoint) after this many non-finite losses in a row")
    max_no_valid: int = rng(
        10, ge=1, help="stop (with a checkpoint) after this many batches without a valid pixel in a row"
    )
    sync_bn: bool = rng(False, help="DDP: SyncBatchNorm (CUDA)")


@dataclass
class ValConfig:
    limit: int = rng(200, ge=-1, help="test pairs used for validation (-1 = all, 0 = none)")
    root: str | None = rng(
        None, help="validate on another root's test split (e.g. a fixed benchmark); null = data.root"
    )
    max_disp: float | None = rng(None, gt=0, help="mask bound 0 < gt < max_disp; null = the model's")
    render_pass: RenderPass = rng(EVAL_PASS, help="as stereo-eval's data.render_pass")
    mask: Mask = rng(EVAL_MASK, help="as stereo-eval's mask")
    averaging: Averaging = rng(EVAL_AVERAGING, help="as stereo-eval's averaging")


@dataclass
class TrainAppConfig(RuntimeConfig):
    """stereo-train: train a stereo network (PSMNet family with efficient attention) on Scene Flow or any
    data= group. The run folder (hydra.run.dir, default runs/train/<time>) gets config.yaml, train.log,
    tensorboard/ and checkpoints/ (last.pt, best.pt).

    Examples:
      stereo-train model=ea_psmnet data.root=/data/SceneFlow train.batch_size=8 device=cuda hydra.run.dir=runs/ea
      stereo-train hydra.run.dir=runs/ea train.resume=true
      stereo-train experiment=finetune_kitti data.root=/data/kitti2015 train.init_from=sceneflow.pt

    Hydra's own options: stereo-train --hydra-help
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)
    seed: int = rng(0, help="seeds Python, NumPy, torch and the data order")
    deterministic: bool = rng(False, help="torch.use_deterministic_algorithms (warn-only) and no cudnn.benchmark")


class Method(Choice):
    checkpoint = "checkpoint"
    sgbm = "sgbm"


@dataclass
class SgbmConfig:
    """OpenCV StereoSGBM settings (``stereo-eval method=sgbm``); see :class:`stereo.sgbm.SGBMStereo`."""

    num_disparities: int | None = rng(
        None, ge=16, help="search range in px; null = max_disp (or 192), rounded up to a multiple of 16"
    )
    block_size: int = rng(5, ge=1, pattern=r"\d*[13579]", expect="an odd number", help="matched block side in px (odd)")
    p1: int | None = rng(None, ge=0, help="null = 8 x 3 x block_size^2 (OpenCV's recommendation)")
    p2: int | None = rng(None, ge=0, help="null = 32 x 3 x block_size^2")
    uniqueness: int = rng(10, ge=0, help="OpenCV's uniquenessRatio, percent")
    speckle_window: int = rng(100, ge=0, help="OpenCV's speckleWindowSize (0 = no speckle filter)")
    speckle_range: int = rng(2, ge=0, help="OpenCV's speckleRange")
    disp12_max_diff: int = rng(1, ge=-1, help="OpenCV's disp12MaxDiff (left-right check, -1 = off)")
    prefilter_cap: int = rng(63, ge=1, help="OpenCV's preFilterCap")
    mode: SgbmMode = rng(SgbmMode.sgbm_3way, help="OpenCV's mode: sgbm | hh | sgbm_3way | hh4")


@dataclass
class EvalAppConfig(RuntimeConfig):
    """stereo-eval: evaluate a checkpoint (or OpenCV SGBM) on a dataset's test split: EPE, bad-1/2/3, D1
    -> metrics.json in the run folder (hydra.run.dir, default runs/eval/<time>).

    Examples:
      stereo-eval checkpoint=runs/ea/checkpoints/best.pt data.root=/data/SceneFlow
      stereo-eval method=sgbm data.root=datasets/generated-v1/272x480 data.render_pass=clean
      stereo-eval data=kitti data.root=/data/kitti2015 checkpoint=kitti.pt

    Hydra's own options: stereo-eval --hydra-help
    """

    method: Method = rng(
        Method.checkpoint, help="checkpoint: a trained network | sgbm: OpenCV's StereoSGBM baseline (sgbm.* keys)"
    )
    sgbm: SgbmConfig = field(default_factory=SgbmConfig)
    checkpoint: str | None = rng(
        None,
        help="a training checkpoint (its model config travels with it); null or shipped = the shipped weights",
    )
    data: DataConfig = field(default_factory=lambda: DataConfig(render_pass=EVAL_PASS))
    mask: Mask = rng(EVAL_MASK, help="positive: 0 < gt < max_disp | absolute: |gt| < max_disp | below: gt < max_disp")
    max_disp: float | None = rng(None, gt=0, help="mask bound in pixels; null = the model's max_disp (192 for PSMNet)")
    averaging: Averaging = rng(
        EVAL_AVERAGING, help="image: per image, then mean over images | pixel: over all valid pixels"
    )
    per_image_csv: bool = rng(False, help="also write per_image.csv")
    worst_k: int = rng(0, ge=0, help="save the K worst predictions as image panels (left / pred / gt / error)")
    adapt: bool = rng(
        False,
        help="adapt the network's refinement to each pair before it is scored, as stereo-infer adapt=true does "
        "(stereo/adapt.py: a photometric loss, the ground truth unused; the shipped weights)",
    )
    adapt_steps: int = rng(20, ge=1, help="adapt=true: optimiser steps per pair (as stereo-infer's)")


@dataclass
class InferAppConfig(RuntimeConfig):
    """stereo-infer: disparity for your own rectified pairs: PFM, 16-bit PNG (x256) and colour PNG, with a
    calibration also depth and a PLY point cloud, optionally a confidence.

    Examples:
      stereo-infer left=left.png right=right.png output_dir=out
      stereo-infer checkpoint=best.pt left=pairs/left right=pairs/right calib=calib.txt point_cloud=true output_dir=out
      stereo-infer left='data/*/left/*.png' right='data/*/right/*.png' output_dir=out

    Hydra's own options: stereo-infer --hydra-help
    """

    backend: Backend = rng(Backend.torch, help="torch | onnxruntime (with onnx=<file.onnx> from stereo-export)")
    onnx: str | None = rng(None, help="backend=onnxruntime: the .onnx file")
    checkpoint: str | None = rng(
        None, help="a training checkpoint; null or shipped = the weights shipped with the package (if any)"
    )
    left: str | None = rng(
        None, help="an image, a folder (recursive) or a glob ('data/*/left/*.png'); layout=sbs|tb: the frames"
    )
    right: str | None = rng(
        None, help="the same kind; matched by the path below a folder or what the wildcards matched (layout=pair)"
    )
    layout: Layout = rng(
        Layout.pair,
        help="pair: left= and right= images | sbs: each image of left= holds both views side by side (left | right) "
        "| tb: top (left view) and bottom (right view); right= is not given then",
    )
    video: str | None = rng(
        None,
        help="a stereo video (layout=sbs|tb): per-frame PFMs (a rerun resumes), then colour, disparity and "
        "confidence videos (stereo/video.py)",
    )
    left_video: str | None = rng(None, help="with right_video: the two cameras' videos, read frame by frame in step")
    right_video: str | None = rng(None, help="with left_video")
    shard: str | None = rng(
        None,
        pattern=r"\d+/\d+|auto",
        expect="i/n (0 <= i < n) or auto",
        help="i/n: the i-th of n deterministic parts of the pairs (by name) | auto: from RANK/WORLD_SIZE (torchrun) "
        "or SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT; null = every pair",
    )
    skip_existing: bool = rng(
        False, help="skip pairs whose outputs are all present already (a killed job resumes where it stopped)"
    )
    output_dir: str | None = rng(None, help="null = the run directory (runs/infer/<time>)")
    scale: float | int | str = rng(
        1.0,
        gt=0,
        le=1,
        word="auto",
        help="(0, 1]: downsample, predict, upsample (for disparities beyond the model's range) | auto: per pair, the "
        "largest that fits its largest matched disparity in the range (stereo/matches.py)",
    )
    disparity_offset: int | str = rng(
        0,
        ge=0,
        word="auto",
        help="pixels the right view moves left before the network, given back after (converged rigs: negative "
        "disparities) | auto: per pair, so that its smallest matched disparity becomes positive",
    )
    rectification_check: Check = rng(
        Check.warn,
        help="warn | error | off: feature matches between the views measure their vertical misalignment (and a "
        "swap); over 1 px anywhere in the frame, one warning naming the pair (error: stop)",
    )
    color_range: ColorRange = rng(
        ColorRange.image, help="image: each colour PNG spans its own range | fixed: 0..color_max"
    )
    color_max: float | None = rng(None, gt=0, help="fixed colour range in pixels; null = the model's max_disp")
    focal_px: float | None = rng(
        None, gt=0, help="with baseline: also write <name>_depth.pfm, depth = baseline * focal_px / (disparity + doffs)"
    )
    baseline: float | None = rng(None, gt=0, help="in the unit you want depth in (e.g. metres); both must be > 0")
    calib: str | None = rng(
        None,
        help="a calibration: rectified cameras (Middlebury/ETH3D calib.txt, KITTI P2/P3; explicit keys win) or raw "
        "ones (OpenCV YAML/XML/JSON with K1 D1 K2 D2 R T, Kalibr camchain.yaml, or two ROS camera_info files: "
        "calib=\"'left.yaml,right.yaml'\" in a shell), which rectify=calib undistorts and rectifies",
    )
    rectify: RectifyMode = rng(
        RectifyMode.auto,
        help="auto: calib for a raw calibration, else off | calib: undistort and rectify with calib= (OpenCV) | "
        "matches: rectify each pair from its feature matches (no calibration; depth has no metric scale) | off",
    )
    save_rectified: bool = rng(False, help="also write <name>_left_rect.png and <name>_right_rect.png")
    cx: float | None = rng(
        None, help="principal point in pixels (point clouds); null = from calib, else the image centre"
    )
    cy: float | None = rng(None, help="principal point y in pixels; as cx")
    doffs: float | None = rng(
        None, help="x-difference of the two principal points (Middlebury), pixels; null = calib or 0"
    )
    point_cloud: bool = rng(False, help="also write <name>.ply: binary PLY, x y z (baseline's unit, left camera) + RGB")
    max_depth: float | None = rng(None, gt=0, help="point cloud: drop points farther than this (baseline's unit)")
    confidence: bool = rng(False, help="also write <name>_confidence.pfm and .png (in [0, 1])")
    min_confidence: float = rng(0.0, ge=0, le=1, help="point cloud: drop pixels less confident than this")
    adapt: bool = rng(
        False,
        help="adapt the network's refinement to each pair before answering, without ground truth (stereo/adapt.py: "
        "a photometric loss, on a copy; the unadapted answer stands unless the loss falls)",
    )
    adapt_steps: int = rng(20, ge=1, help="adapt=true: optimiser steps per pair (about 0.5 s each per 0.4 megapixels)")


@dataclass
class ExportAppConfig:
    """stereo-export: a checkpoint as ONNX with dynamic batch, height and width (for ONNX Runtime:
    stereo-infer backend=onnxruntime onnx=<file>).

    Examples:
      stereo-export output=model.onnx
      stereo-export checkpoint=runs/ea/checkpoints/best.pt output=ea.onnx opset=17

    Hydra's own options: stereo-export --hydra-help
    """

    checkpoint: str | None = rng(
        None, help="a training checkpoint; null or shipped = the weights shipped with the package"
    )
    output: str = rng(MISSING, help="the .onnx file to write (atomically)")
    opset: int = rng(17, ge=13, help="ONNX opset")


@dataclass
class AppAppConfig(RuntimeConfig):
    """stereo-app: see depth in the browser. Serves a local web page (Gradio; pip install .[app]): drop two
    photos or one side-by-side frame, get the disparity, its confidence and a 3-D point cloud, with PFM,
    16-bit PNG and PLY downloads. Numbers as stereo-infer's: the page calls the same Python API.

    Examples:
      stereo-app                                  # then open http://127.0.0.1:7860
      stereo-app checkpoint=best.pt port=8080 device=cuda
      stereo-app host=0.0.0.0                     # every network interface: anyone on the network can use it

    Hydra's own options: stereo-app --hydra-help
    """

    host: str = rng(
        "127.0.0.1", help="the address served on; 0.0.0.0 = every interface (anyone on the network can use it)"
    )
    port: int = rng(7860, ge=1, le=65535, help="the TCP port of the page")
    checkpoint: str | None = rng(
        None, help="a training checkpoint; null or shipped = the weights shipped with the package"
    )
    scale: float = rng(1.0, gt=0, le=1, help="the page's starting scale (as stereo-infer's scale)")
    min_confidence: float = rng(
        0.5, ge=0, le=1, help="the page's starting confidence threshold: less confident pixels are shaded"
    )
    max_points: int = rng(
        200_000, ge=1000, help="3-D view: at most this many points (every k-th pixel); the PLY keeps every point"
    )
    adapt_steps: int = rng(20, ge=1, help="the page's adapt option: optimiser steps per pair (as stereo-infer's)")


SCHEMAS = {"train": TrainAppConfig, "eval": EvalAppConfig, "infer": InferAppConfig, "export": ExportAppConfig,
           "app": AppAppConfig}  # fmt: skip
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
        if "word" in meta and isinstance(v, str):  # a number, or this one word (scale=auto)
            if v != meta["word"]:
                errors.append(f"{key}={v}: expected a number or {meta['word']}")
            continue
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


def _default(f: dataclasses.Field) -> Any:
    """A field's default made by its factory (nested configs and lists), else None."""
    return f.default_factory() if callable(f.default_factory) else None


def _walk(schema: type, node: Any, prefix: str) -> list[str]:
    errors = []
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        value = node.get(f.name) if isinstance(node, (dict, DictConfig)) else getattr(node, f.name, None)
        default = _default(f)
        if dataclasses.is_dataclass(default):
            errors += _walk(type(default), value or {}, f"{key}.")
        elif f.name == "attention":
            for i, spec in enumerate(value or []):
                errors += _walk(AttentionConfig, spec, f"{key}.{i}.")
        else:
            errors += _check_value(key, value, dict(f.metadata))
    return errors


def check_config(cfg: DictConfig, schema: type) -> None:
    """Raise :class:`ConfigError` listing every missing key, out-of-range value and refused combination
    of keys (:func:`combination_errors`) of ``cfg``."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    errors = [f"{k} is required (add {k}=...)" for k in missing]
    errors += _walk(schema, cfg, "")
    if not errors:
        errors += combination_errors(cfg, schema)
    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors))


S = TypeVar("S")


def typed(cfg: Any, schema: type[S]) -> S:
    """``cfg`` (a composed DictConfig, a mapping or an instance of ``schema``) checked by :func:`check_config`
    and returned as the schema's dataclass: the one conversion at the border of each app and tool, after
    which code reads typed attributes, never a DictConfig."""
    try:
        node = cast(DictConfig, OmegaConf.merge(OmegaConf.structured(schema), cfg))
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid config: {str(e).splitlines()[0]}") from None
    check_config(node, schema)
    return OmegaConf.to_object(node)  # type: ignore[return-value]  # a structured node gives its dataclass


def combination_errors(cfg: Any, schema: type) -> list[str]:
    """The keys that each hold a valid value but refuse each other, in one place, checked with the rest
    of the config before any work. A training config knows its model; stereo-eval's and stereo-infer's
    model comes from a checkpoint, so the model refuses its own runtime there (``PSMNet.set_runtime``)."""
    if schema is InferAppConfig:
        return _adapt_errors(cfg, schema) + _infer_errors(cfg)
    if schema is EvalAppConfig:
        return _adapt_errors(cfg, schema)
    if schema is not TrainAppConfig:
        return []
    errors = []
    t, refine = cfg.train, Refine(str(cfg.model.refine))
    if t.micro_batch and t.batch_size % t.micro_batch:
        errors.append(f"train.micro_batch={t.micro_batch} must divide train.batch_size={t.batch_size}")
    if t.loss_max_error is not None and str(t.loss) == Loss.photometric.value:
        errors.append("train.loss_max_error truncates a loss on the ground truth (smooth_l1 or l1), not "
                      f"train.loss={t.loss}; set it to null")  # fmt: skip
    if t.cache_frozen:
        if str(cfg.model.subpixel) == "none":
            errors.append(
                "train.cache_frozen=true trains model.subpixel alone; this model has none (model.subpixel=match)"
            )
        if cfg.data.augment.enabled:
            errors.append("train.cache_frozen=true caches the network's answers for the views as read: set "
                          "data.augment.enabled=false")  # fmt: skip
    return errors + runtime_model_errors(
        runtime_config(cfg), refine, cfg.model.hourglasses, cfg.model.subpixel, cfg.model.subpixel_select
    )


def _adapt_errors(cfg: Any, schema: type) -> list[str]:
    """adapt_steps changed without adapt=true would do nothing: say so instead of answering unadapted."""
    default = next(f.default for f in dataclasses.fields(schema) if f.name == "adapt_steps")
    if not cfg.adapt and cfg.adapt_steps != default:
        return [f"adapt_steps={cfg.adapt_steps} sets the steps of adapt=true, which is off: add adapt=true"]
    return []


def _infer_errors(cfg: Any) -> list[str]:
    errors = []
    if str(cfg.rectify) == "calib" and not cfg.calib:
        errors.append("rectify=calib needs calib=<a raw calibration: OpenCV YAML/XML/JSON, Kalibr, ROS left,right>")
    if str(cfg.rectify) == "matches" and (cfg.calib or cfg.focal_px or cfg.baseline):
        errors.append("rectify=matches rectifies without a calibration (depth has no metric scale): drop calib, "
                      "focal_px and baseline, or use rectify=calib with a raw calibration")  # fmt: skip
    videos = bool(cfg.video or cfg.left_video or cfg.right_video)
    if videos:
        return _video_errors(cfg)
    if not cfg.left:
        errors.append("left is required (add left=...), or video=... / left_video=... right_video=...")
    elif str(cfg.layout) == "pair" and not cfg.right:
        errors.append("right is required (add right=...), or give frames holding both views with layout=sbs|tb")
    if str(cfg.layout) != "pair" and cfg.right:
        errors.append(f"right={cfg.right} with layout={cfg.layout}: each frame of left= holds both views; drop right=")
    if cfg.shard and cfg.shard != "auto":
        i, n = (int(v) for v in str(cfg.shard).split("/"))
        if not 0 <= i < n:
            errors.append(f"shard={cfg.shard}: expected i/n with 0 <= i < n")
    return errors


def _video_errors(cfg: Any) -> list[str]:
    errors = []
    if cfg.video and (cfg.left_video or cfg.right_video):
        errors.append("video= holds both views: drop left_video/right_video (or give those two without video=)")
    if cfg.video and str(cfg.layout) == "pair":
        errors.append(f"video={cfg.video} needs layout=sbs (side by side) or layout=tb (top-bottom)")
    if not cfg.video and not (cfg.left_video and cfg.right_video):
        errors.append("left_video= and right_video= go together")
    if cfg.left or cfg.right:
        errors.append("left=/right= are images; with a video, drop them")
    given = {"point_cloud": cfg.point_cloud, "shard": cfg.shard, "adapt": cfg.adapt, "skip_existing": cfg.skip_existing,
             "calib": cfg.calib, "scale": cfg.scale if cfg.scale == "auto" else None,
             "disparity_offset": cfg.disparity_offset or None}  # fmt: skip
    refused = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in given.items() if v]
    if refused:
        errors.append(f"{', '.join(refused)}: not available for video (a video resumes by itself from its frame PFMs)")
    return errors


def runtime_model_errors(
    runtime: RuntimeConfig,
    refine: Refine | str,
    hourglasses: int,
    subpixel: Subpixel | str = Subpixel.none,
    select: Select | str = Select.none,
) -> list[str]:
    """Runtime settings a model refuses: a training config checks them (:func:`combination_errors`), and
    so does a model loaded from a checkpoint (``PSMNet.set_runtime``), whose architecture only the file
    tells."""
    errors = []
    if runtime.early_exit == EarlyExit.head and not 1 <= runtime.exit_head <= hourglasses:
        errors.append(f"exit_head={runtime.exit_head}: the model has heads 1..{hourglasses} (model.hourglasses)")
    if runtime.regression == Regression.local and Refine(str(refine)) == Refine.modes and runtime.refinement:
        errors.append(
            "regression=local with model.refine=modes: the refinement already sees the windowed estimate and "
            "chooses per pixel; use regression=soft_argmin, or add refinement=false for the windowed estimate alone"
        )
    for key in ("subpixel_steps", "propagate"):
        if getattr(runtime, key) not in (None, 0) and Subpixel(str(subpixel)) == Subpixel.none:
            errors.append(
                f"{key}={getattr(runtime, key)}: it needs a sub-pixel stage, and this model has none "
                "(model.subpixel=none); the shipped weights have one"
            )
    if runtime.subpixel_rounds and Select(str(select)) == Select.none:
        errors.append(
            f"subpixel_rounds={runtime.subpixel_rounds}: each round ends with the learned choice, and this model has "
            "none (model.subpixel_select=none); the shipped weights have one"
        )
    return errors


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


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict (e.g. :func:`to_plain`'s) as ``{dotted key: leaf value}``; lists are leaves."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _help_rows(schema: type, node: Any, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        value = OmegaConf.select(node, f.name, throw_on_missing=False) if node is not None else None
        default = _default(f)
        if dataclasses.is_dataclass(default):
            rows += _help_rows(type(default), value, f"{key}.")
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            shown = json.dumps(OmegaConf.to_container(value, enum_to_str=True), separators=(",", ":"))
        elif node is not None and OmegaConf.is_missing(node, f.name):
            shown = "???"
        else:
            shown = "null" if value is None else str(value.value if isinstance(value, Enum) else value)
            shown = shown.lower() if isinstance(value, bool) else shown
        rows.append((f"{key}={shown}", f.metadata.get("help", "")))
    return rows


def format_help(schema: type, cfg: Any = None, groups: dict[str, str] | None = None, doc: str | None = None) -> str:
    """``--help`` of an app or tool, generated from its schema: the schema's docstring (what it does,
    examples; or ``doc``), its config groups (``groups``: group -> the option chosen) and every key with its
    value in ``cfg`` (the composed config; None = the schema's defaults) and its help text."""
    lines = [inspect.cleandoc(doc if doc is not None else schema.__doc__ or "")]
    if groups:
        lines.append("\nConfig groups (choose with group=option):")
        for group, chosen in groups.items():
            options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
            lines.append(f"  {group}={chosen}  (options: {', '.join(options)})")
    rows = _help_rows(schema, cfg if cfg is not None else OmegaConf.structured(schema))
    width = min(max(len(k) for k, _ in rows) + 2, 44)
    lines.append("\nKeys (key=value as set now; override any with key=value):")
    for key, text in rows:
        line = f"  {key:<{width}}{text}" if len(key) < width else f"  {key}\n  {'':<{width}}{text}"
        lines.append(line.rstrip())
    return "\n".join(lines)


@contextlib.contextmanager
def _own_hydra() -> Iterator[None]:
    """Inside a Hydra application (a console script, or a user's own app calling the API) Hydra is
    initialised already with that app's config path: set it aside while composing ours, then put it back,
    so that reading a config never fails with 'GlobalHydra is already initialized'."""
    from hydra.core.global_hydra import GlobalHydra

    outer = GlobalHydra.instance()
    app = outer.hydra if outer.is_initialized() else None
    if app is not None:
        outer.clear()
    try:
        yield
    finally:
        if app is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(app)


def load_config(name: str, overrides: list[str] | None = None, config_dir: str | Path = CONF_DIR) -> DictConfig:
    """Compose ``<config_dir>/<name>.yaml`` (an app such as ``train``, or a group entry such as
    ``model/ea_psmnet``) with Hydra overrides, typed by its schema."""
    from hydra import compose, initialize_config_dir

    config_dir = Path(config_dir)
    if not (config_dir / f"{name}.yaml").is_file():
        options = sorted(p.relative_to(config_dir).with_suffix("").as_posix() for p in config_dir.rglob("*.yaml"))
        raise MissingFileError(f"no config {name!r} in {config_dir}; available: {options}")
    group, _, leaf = name.rpartition("/")
    overrides = list(overrides or [])
    if group in _GROUP_SCHEMAS:
        # A group entry holds only what differs from its schema: its keys may be absent from the file.
        overrides = [o if o.startswith("+") else f"++{o}" for o in overrides]
    with _own_hydra():
        with initialize_config_dir(str(config_dir / group) if group else str(config_dir), version_base=None):
            cfg = compose(leaf, overrides=overrides)
    if group in _GROUP_SCHEMAS:
        cfg = cast(DictConfig, OmegaConf.merge(OmegaConf.structured(_GROUP_SCHEMAS[group]), cfg))
    return cfg
