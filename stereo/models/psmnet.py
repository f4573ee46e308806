"""PSMNet (Chang & Chen, CVPR 2018) with optional attention in the feature extractor (EA-PSMNet)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from stereo.config import ModelConfig, RuntimeConfig, runtime_config, runtime_model_errors, to_plain
from stereo.errors import ConfigError
from stereo.models.aggregation import StackedHourglass
from stereo.models.cost_volume import concat_volume, gwc_volume
from stereo.models.feature import FeatureExtractor
from stereo.models.output import StereoOutput, TrainingOutput
from stereo.models.polish import zncc_polish
from stereo.models.refinement import Guides, build_refinement
from stereo.models.subpixel import SubpixelMatch

log = logging.getLogger(__name__)
_WARNED_BUDGETS: set[tuple] = set()  # (batch, h4, w4, budget) already warned about, once per process

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PSMNet(nn.Module):
    """Cost-volume stereo network: features at 1/4 (or 1/8), cost volume, stacked hourglasses, soft-argmin.

    Two methods, both on RGB in [0, 1], (B, 3, H, W) with H and W multiples of :attr:`size_divisor` (use
    :func:`stereo.models.run` for any size), normalised by the network itself:
    :meth:`forward_train` (what ``model(left, right)`` and DDP call) returns every head's disparity
    (:class:`~stereo.models.output.TrainingOutput`); :meth:`infer` (eval mode) returns the final disparity,
    computed with only what it needs, and what it may need to report
    (:class:`~stereo.models.output.StereoOutput`). Each head's cost becomes a disparity in the model's
    :class:`~stereo.models.refinement.Refinement` (``model.refine``), which owns its regression.

    Args:
        cfg: the architecture (:class:`~stereo.config.ModelConfig`): ``max_disp`` (pixels, a multiple of
            4 x ``downsample``: the volume is D/downsample deep and the hourglasses halve it twice),
            ``downsample`` (4: features and volume at 1/4 of the image, as PSMNet; 8: at 1/8, an eighth of the
            3-D work, for CPUs), ``volume`` (``concat`` or
            ``gwc`` with ``gwc_groups``), ``volume_channels``, ``hourglasses`` (= output heads) and
            ``feature`` (:class:`~stereo.models.feature.FeatureExtractor` settings).

    Runtime settings (:meth:`set_runtime`, not part of the weights): ``eval_chunk_rows`` (rows per chunk
    of the final upsampling in eval mode, bounding peak memory; 0 = all at once),
    ``memory_budget_gb`` (eval: when the 3-D part of a frame would need more, it runs in bands of rows
    with a halo wider than its receptive field, so the result is the same; :meth:`eval_tile_rows`) and
    ``channels_last_3d`` (cost volume and 3-D weights channels-last, the layout oneDNN's 3-D convolutions
    prefer on CPUs (docs/performance.md); same numbers up to rounding).
    """

    size_divisor = 16

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        k = 4 * cfg.downsample
        if cfg.max_disp <= 0 or cfg.max_disp % k:
            raise ConfigError(
                f"max_disp must be a positive multiple of {k} (the cost volume is max_disp/{cfg.downsample} deep and "
                f"the hourglasses halve it twice), got {cfg.max_disp}; try {max(k, round(cfg.max_disp / k) * k)}"
            )
        if cfg.volume not in ("concat", "gwc"):
            raise ConfigError(f"volume must be 'concat' or 'gwc', got {cfg.volume!r}")
        self.config = cfg
        self.max_disp = cfg.max_disp
        self.downsample = cfg.downsample
        self.size_divisor = 4 * cfg.downsample  # the hourglasses' two stride-2 levels below the features
        self.volume = str(cfg.volume)
        self.gwc_groups = cfg.gwc_groups
        self.hourglasses = cfg.hourglasses
        f = cfg.feature
        attention = [dict(a) for a in to_plain(f.attention)]
        self.feature_extraction = FeatureExtractor(
            f.base_channels, f.blocks, f.pool_sizes, f.out_channels, attention, cfg.downsample
        )
        fc = self.feature_extraction.out_channels
        in_channels = 2 * fc if self.volume == "concat" else cfg.gwc_groups
        self.aggregation = StackedHourglass(in_channels, cfg.volume_channels, cfg.hourglasses)
        # refine=none has no weights: a PSMNet's state dict stays exactly the original's.
        self.refinement = build_refinement(str(cfg.refine), cfg.max_disp, cfg.refine_channels)
        # subpixel=none registers nothing: the state dict stays the same as without the option.
        select = str(cfg.subpixel_select) == "learned"
        if select and str(cfg.subpixel) != "match":
            raise ConfigError(
                "model.subpixel_select=learned chooses after the sub-pixel stage: it needs model.subpixel=match"
            )
        if cfg.subpixel_rounds and not select:
            raise ConfigError(
                f"model.subpixel_rounds={cfg.subpixel_rounds}: each round ends with the learned choice; it needs "
                "model.subpixel_select=learned"
            )
        self.subpixel = (
            SubpixelMatch(steps=cfg.subpixel_steps, select=select, rounds=cfg.subpixel_rounds)
            if str(cfg.subpixel) == "match"
            else None
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.set_runtime()

    def set_runtime(self, runtime: RuntimeConfig | None = None, **changes: Any) -> None:
        """Runtime settings (not part of the weights; :class:`~stereo.config.RuntimeConfig`): ``runtime``
        (None = the current ones) with ``changes`` over it. Memory layout of the 3-D part and eval chunking
        change speed and memory only; early exit over the hourglass heads in eval mode: ``off`` (every
        head), ``confidence`` (an image stops after head k < K once the mean over its 1/4-resolution pixels
        of the largest disparity probability reaches ``exit_threshold``) or ``head`` (always answer with
        head ``exit_head``)."""
        rt = runtime_config(runtime if runtime is not None else getattr(self, "runtime", None), **changes)
        errors = runtime_model_errors(
            rt, self.config.refine, self.hourglasses, self.config.subpixel, self.config.subpixel_select
        )
        if errors:
            raise ConfigError("; ".join(errors))
        self.runtime = rt
        self.aggregation.to(memory_format=self.memory_format)
        self.feature_extraction.to(memory_format=self._format_2d)

    @property
    def memory_format(self) -> torch.memory_format:
        """Layout of the cost volume and the 3-D network (``channels_last_3d``)."""
        return torch.channels_last_3d if self.runtime.channels_last_3d else torch.contiguous_format

    @property
    def _format_2d(self) -> torch.memory_format:
        """Layout of the feature extractor (``channels_last``: oneDNN's bf16 convolutions ran it 2.1x faster
        than in NCHW, fp32 1.1x, training 1.1x/1.4x; 2026-12-06, Intel Xeon with AMX, 2 cores)."""
        return torch.channels_last if self.runtime.channels_last else torch.contiguous_format

    def check_train_shape(self, batch: int, height: int, width: int) -> None:
        """Raise :class:`ConfigError` when a training batch of (batch, 3, height, width) cannot train.

        BatchNorm in training needs more than one value per channel; in the spatial pyramid a pool that
        covers the whole 1/4-resolution feature map leaves one value per image, so batch 1 fails there.
        """
        if height % self.size_divisor or width % self.size_divisor:
            raise ConfigError(f"training crop {height}x{width}: both sides must be multiples of {self.size_divisor}")
        h4, w4 = height // self.downsample, width // self.downsample
        if batch * self.feature_extraction.min_pooled_values(h4, w4) < 2:
            coarsest = max(self.feature_extraction.pool_sizes)
            raise ConfigError(
                f"a batch of {batch} at crop {height}x{width} cannot train: the coarsest spatial-pyramid pool "
                f"({coarsest} at 1/{self.downsample} resolution) covers the whole {h4}x{w4} feature map, leaving "
                f"BatchNorm one value per channel. Use train.batch_size >= 2 (per process), or a crop with width or "
                f"height >= {2 * self.downsample * coarsest} (e.g. data.crop_size=[{height},"
                f"{max(width, 2 * self.downsample * coarsest)}])"
            )

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> TrainingOutput:
        """:meth:`forward_train`: the call of ``nn.Module`` (and of DDP, which synchronises gradients there)."""
        return self.forward_train(left, right)

    def forward_train(self, left: torch.Tensor, right: torch.Tensor) -> TrainingOutput:
        """Every head's (B, H, W) disparity in pixels, through the model's refinement, for the loss. In
        training mode BatchNorm uses the batch's statistics (PSMNet's training forward)."""
        self._check_inputs(left, right)
        size = (self.max_disp, *left.shape[-2:])
        costs = self.aggregation(self.volume_of(*self.features(left, right)))
        guides = self.guides(left, right)
        heads = [self.refinement.train_head(c, size, guides) for c in costs]  # one shared refinement
        return TrainingOutput([self.matched(h, guides) for h in heads])

    def infer(self, left: torch.Tensor, right: torch.Tensor, confidence: bool = False) -> StereoOutput:
        """Eval mode: the disparity (B, H, W) in pixels, the confidence (B, H, W) in [0, 1] when asked for
        (the regression's probability mass near its estimate, :func:`~stereo.models.regression.soft_argmin`),
        the head that answered each image and the bands of rows of the 3-D part."""
        if self.training:
            raise RuntimeError("PSMNet.infer runs in eval mode (model.eval())")
        self._check_inputs(left, right)
        size = (self.max_disp, *left.shape[-2:])
        if self.runtime.early_exit != "off":  # early exit decides per image from the whole head cost: no bands
            return self._infer_early_exit(*self.features(left, right), size, left, right, confidence)
        cost, bands = self.final_cost(left, right)
        guides = self.guides(left, right)
        disp, conf = self.refinement.infer_head(cost, size, guides, self.runtime, confidence)
        disp = self.polished(self.matched(disp, guides), left, right)
        return StereoOutput(disp, conf, [self.hourglasses] * left.shape[0], bands)

    def final_cost(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Eval: the last head's (B, 1, D/4, H/4, W/4) cost of the frame (in bands of rows under
        ``memory_budget_gb``, with the same numbers) and the number of bands."""
        fl, fr = self.features(left, right)
        b, _, h4, w4 = fl.shape
        tile = self.eval_tile_rows(b, h4, w4)
        if tile is not None:
            return self._aggregate_in_bands(fl, fr, tile)
        vol = [self.volume_of(fl, fr)]
        del fl, fr
        return self.aggregation.final_cost(vol), 1  # takes the volume out of the list: freed early

    def _infer_early_exit(
        self,
        fl: torch.Tensor,
        fr: torch.Tensor,
        size: tuple[int, int, int],
        left: torch.Tensor,
        right: torch.Tensor,
        confidence: bool,
    ) -> StereoOutput:
        """:meth:`infer` with early exit: each image answers from the head it stopped at, one by one."""
        vol = [self.volume_of(fl, fr)]
        del fl, fr
        costs, heads = self.aggregation.forward_early_exit(vol, self._should_stop)
        rt = self.runtime
        disps, confs = [], []
        for i, c in enumerate(costs):  # one answer per image, in order (forward_early_exit)
            guides = self.guides(left[i : i + 1], right[i : i + 1])
            disp, conf = self.refinement.infer_head(c, size, guides, rt, confidence)
            disps.append(self.matched(disp, guides))
            confs.append(conf)
        conf = torch.cat([c for c in confs if c is not None]) if confidence else None
        return StereoOutput(self.polished(torch.cat(disps), left, right), conf, heads, 1)

    def matched(self, disp: torch.Tensor, guides: Guides) -> torch.Tensor:
        """The (B, H, W) disparity after ``model.subpixel``'s full-resolution matching, in eval with the runtime's
        ``subpixel_steps``, ``subpixel_rounds`` and ``propagate`` (unchanged without the stage, or in eval with
        ``refinement=false``, which asks for the network's own answer)."""
        if self.subpixel is None or (not self.training and not self.runtime.refinement):
            return disp
        if self.training:
            return self.subpixel(disp, *guides)
        rt = self.runtime
        return self.subpixel(
            disp, *guides, steps=rt.subpixel_steps, propagation=rt.propagate, rounds=rt.subpixel_rounds
        )

    def polished(self, disp: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """The runtime's ``polish`` of the (B, H, W) disparity (none: unchanged)."""
        if self.runtime.polish == "zncc":
            return zncc_polish(left, right, disp, min_zncc=self.runtime.polish_min_zncc)[0]
        return disp

    def _check_inputs(self, left: torch.Tensor, right: torch.Tensor) -> None:
        if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
            raise ValueError(
                f"expected left and right of the same shape (B, 3, H, W), got {tuple(left.shape)} and "
                f"{tuple(right.shape)}"
            )
        h, w = left.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(
                f"H and W must be multiples of {self.size_divisor}, got {h}x{w}; "
                "use stereo.models.run() to pad any size"
            )

    def normalised(self, image: torch.Tensor) -> torch.Tensor:
        """RGB (B, 3, H, W) in [0, 1] -> the ImageNet-normalised input of the feature extractor and the
        refinement."""
        return (image - self.mean) / self.std

    def guides(self, left: torch.Tensor, right: torch.Tensor) -> Guides:
        """The normalised views (B, 3, H, W) that guide the refinement."""
        return self.normalised(left), self.normalised(right)

    def features(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) RGB in [0, 1] x2 -> (B, C, H/4, W/4) features of each view."""
        # Two calls, as PSMNet: in training each view's batch gets its own BatchNorm statistics.
        fl = self.feature_extraction(self.normalised(left).contiguous(memory_format=self._format_2d))
        fr = self.feature_extraction(self.normalised(right).contiguous(memory_format=self._format_2d))
        return fl, fr

    def volume_of(self, fl: torch.Tensor, fr: torch.Tensor) -> torch.Tensor:
        """Features (B, C, H/4, W/4) x2 -> the (B, C', D/4, H/4, W/4) cost volume (row by row: each row of
        the volume depends only on the same row of the features)."""
        d4 = self.max_disp // self.downsample
        if self.volume == "concat":
            return concat_volume(fl, fr, d4, self.memory_format)
        return gwc_volume(fl, fr, d4, self.gwc_groups, self.memory_format)

    def cost_volume(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Features of both views -> the (B, C, D/4, H/4, W/4) cost volume the 3-D network aggregates."""
        return self.volume_of(*self.features(left, right))

    # ---- memory-bounded evaluation ----

    @property
    def band_halo(self) -> int:
        """Rows (at 1/4 resolution) of context each band of the 3-D part needs on either side: its
        receptive field (measured: 30 rows with 2 hourglasses, 40 with 3) with margin, a multiple of 4
        so bands stay on the grid of the two stride-2 levels."""
        return 4 * -(-(12 + 12 * self.hourglasses) // 4)

    def bytes_per_cell(self) -> int:
        """Estimated peak bytes of the 3-D part per cell of the (D/4, H/4, W/4) grid and image, fp32, on
        the inference path (:meth:`~stereo.models.aggregation.StackedHourglass.final_cost`): the larger of
        the input volume with two activations of ``volume_channels`` (the first convolution) and about six
        such activations (an hourglass: the stem output, its input, convolution and BatchNorm outputs,
        skips). Checked against peak memory in docs/performance.md."""
        vol_channels = 2 * self.feature_extraction.out_channels if self.volume == "concat" else self.gwc_groups
        c = self.config.volume_channels
        return 4 * max(vol_channels + 2 * c, 6 * c)

    def bytes_2d_per_pixel(self) -> int:
        """Estimated peak bytes per input pixel and image of everything but the 3-D part, fp32, eval: the
        two views and their padded copies, the feature extractor's activations at 1/2 and 1/4 resolution,
        the regression's full-resolution maps and the refinement's convolutions, or the sub-pixel stage's maps
        (``model.subpixel``) when they are more (it runs after the refinement). Calibrated on the shipped
        weights by peak RSS (docs/performance.md); the stage's share is its count of maps, which peak RSS bore out."""
        base = self.config.feature.base_channels
        stage = self.subpixel.full_resolution_channels if self.subpixel is not None else 0  # runs after the refinement
        return 4 * (24 + 3 * base + max(self.refinement.full_resolution_channels, stage) + self.max_disp // 16)

    def peak_bytes(self, batch: int, height: int, width: int) -> int:
        """Estimated peak bytes of :meth:`infer` on (batch, 3, height, width) images (padded to
        :attr:`size_divisor`), fp32: the 3-D part (whole, or its largest band under ``memory_budget_gb``)
        plus :meth:`bytes_2d_per_pixel`, which bands of rows cannot split."""
        h, w = -(-height // self.size_divisor) * self.size_divisor, -(-width // self.size_divisor) * self.size_divisor
        h4, w4 = h // self.downsample, w // self.downsample
        tile = self.eval_tile_rows(batch, h4, w4, warn=False) if self.runtime.early_exit == "off" else None
        rows = h4 if tile is None else min(h4, tile + 2 * self.band_halo)
        return rows * self._row_bytes(batch, w4) + self._full_resolution_bytes(batch, h4, w4)

    def _row_bytes(self, batch: int, w4: int) -> int:
        """Estimated bytes of the 3-D part for one row at 1/4 resolution (:meth:`bytes_per_cell`)."""
        return batch * w4 * (self.max_disp // self.downsample) * self.bytes_per_cell()

    def _full_resolution_bytes(self, batch: int, h4: int, w4: int) -> int:
        """Estimated bytes of the part of a (4 h4, 4 w4) frame that bands cannot split."""
        return self.bytes_2d_per_pixel() * batch * self.downsample**2 * h4 * w4

    def band_spans(self, h4: int, tile: int) -> list[tuple[int, int, int, int]]:
        """The bands of ``tile`` rows over ``h4`` rows at 1/4 resolution: (first, end) of the rows each
        band computes, halo included, and (first, end) of the rows it keeps."""
        halo = self.band_halo
        return [(max(0, r0 - halo), min(h4, r0 + tile + halo), r0, min(r0 + tile, h4)) for r0 in range(0, h4, tile)]

    def eval_tile_rows(self, batch: int, h4: int, w4: int, warn: bool = True) -> int | None:
        """Rows (at 1/4 resolution, a multiple of 4) per band of the 3-D part so that a band with its halo
        fits ``memory_budget_gb``; None when the whole frame fits, when no band would be smaller than the
        frame, or there is no budget. Bands are evened out (same count, fewer rows each). A budget below
        the smallest band (4 rows + two halos) runs that band, with a warning that says what it costs. The
        budget is what :meth:`bytes_2d_per_pixel` leaves of ``memory_budget_gb`` for this frame."""
        if self.runtime.memory_budget_gb is None:
            return None
        per_row = self._row_bytes(batch, w4)
        room = self.runtime.memory_budget_gb * 2**30 - self._full_resolution_bytes(batch, h4, w4)
        budget_rows = int(max(room, 0) // per_row)
        if budget_rows >= h4:
            return None
        tile = (budget_rows - 2 * self.band_halo) // 4 * 4
        short = tile < 4
        tile = max(4, tile)
        spans = self.band_spans(h4, tile)
        if max(b - a for a, b, _, _ in spans) >= h4:
            return None  # a band would hold as many rows as the whole frame: no memory to save
        n = len(spans)
        per_band = -(-h4 // n)  # ceil(h4 / n)
        tile = -(-per_band // 4) * 4
        if short and warn:
            key = (batch, h4, w4, self.runtime.memory_budget_gb)
            if key not in _WARNED_BUDGETS:
                _WARNED_BUDGETS.add(key)
                work = sum(b - a for a, b, _, _ in self.band_spans(h4, tile)) / h4
                log.warning(
                    "memory_budget_gb=%g leaves %.2f GB beside the full-resolution part, below the smallest band "
                    "of rows for a %dx%d frame (%.2f GB: 4 rows at 1/4 resolution + two %d-row halos); running "
                    "bands of 4 rows: about %.0fx the 3-D work of the whole frame (%.2f GB). Raise "
                    "memory_budget_gb, or null for whole frames",
                    self.runtime.memory_budget_gb, max(room, 0) / 2**30, self.downsample * h4, self.downsample * w4,
                    (4 + 2 * self.band_halo) * per_row / 2**30, self.band_halo, work, h4 * per_row / 2**30,
                )  # fmt: skip
        return tile

    def _aggregate_in_bands(self, fl: torch.Tensor, fr: torch.Tensor, tile: int) -> tuple[torch.Tensor, int]:
        """The final (B, 1, D/4, H/4, W/4) cost, computed band by band of ``tile`` rows (each with
        :attr:`band_halo` rows of context): the same numbers as the whole frame at a fraction of the memory;
        and the number of bands."""
        out = None
        spans = self.band_spans(fl.shape[2], tile)
        for a, b, r0, r1 in spans:
            cost = self.aggregation.final_cost([self.volume_of(fl[:, :, a:b], fr[:, :, a:b])])
            if out is None:
                out = cost.new_empty((*cost.shape[:3], fl.shape[2], cost.shape[4]))
            out[:, :, :, r0:r1] = cost[:, :, :, r0 - a : r1 - a]
        return out, len(spans)

    def _should_stop(self, head: int, cost: torch.Tensor) -> torch.Tensor:
        """(b,) bool: may the images of this (b, 1, D', H', W') head cost stop here?"""
        if self.runtime.early_exit == "head":
            return torch.full((cost.shape[0],), head >= self.runtime.exit_head, dtype=torch.bool)
        confidence = torch.softmax(cost.squeeze(1).float(), dim=1).amax(1).mean((1, 2))  # (b,)
        return confidence >= self.runtime.exit_threshold


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
