"""Training, driven by the composed ``conf/train.yaml``: :func:`train` runs a :class:`Trainer`.

Single process or DDP under ``torchrun`` (NCCL on CUDA, Gloo on CPU); fp32, bf16 or fp16 (with a grad
scaler); TensorBoard logs, atomic checkpoints, exact resume, clean stops on SIGINT/SIGTERM, and a
checkpoint before any other exception once a step was taken. Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import re
import signal
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from stereo.checkpoint import (
    STAGES,
    config_differences,
    init_weights,
    load_checkpoint,
    load_weights,
    numpy_rng_as_data,
    numpy_rng_from_data,
    save_checkpoint,
)
from stereo.config import TrainAppConfig, to_plain, typed
from stereo.data.dataset import StereoDataset
from stereo.data.images import imread_checked
from stereo.data.registry import (
    Sample,
    apply_limit,
    dataset_samples,
    edge_radius_of,
    require_ground_truth,
    texture_region_of,
)
from stereo.device import autocast, check_precision, resolve_device
from stereo.engine import all_reduce_sum, evaluate_model
from stereo.errors import CheckpointError, ConfigError, DatasetError, TrainingStopped
from stereo.frozen_answers import check_only_stage_trains, frozen_answers
from stereo.io import output_lock, write_json, write_text
from stereo.losses import occluded_from_disparity, photometric_loss
from stereo.metrics import METRIC_KEYS, Metrics, disparity_metrics
from stereo.models import build_model, model_config
from stereo.progress import progress
from stereo.visualize import ERROR_MAX_PX, result_panels
from stereo.weights import resolve_checkpoint

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["Trainer", "TrainingStopped", "epoch_batches", "sequence_loss", "train"]
log = logging.getLogger(__name__)

PSMNET_LOSS_WEIGHTS = (0.5, 0.7, 1.0)


# ---- pieces without state ----------------------------------------------------------------------------


def init_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return 0, 1, device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """This rank's index batches for an epoch: a seeded permutation cut into global batches of
    ``batch_size * world``, each rank taking its slice; the incomplete last batch is dropped."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    per_step = batch_size * world
    return [
        perm[s * per_step + rank * batch_size : s * per_step + (rank + 1) * batch_size] for s in range(n // per_step)
    ]


PIXEL_LOSSES = {"smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss}  # train.loss on the ground truth


def sequence_loss(
    outs: list[torch.Tensor],
    gt: torch.Tensor,
    valid: torch.Tensor,
    weights,
    max_error: float | None = None,
    kind: str = "smooth_l1",
) -> torch.Tensor:
    """Weighted mean per-pixel smooth L1 (``kind="smooth_l1"``, PSMNet's) or L1 (``"l1"``) over valid pixels
    (errors in pixels), one weight per head (PSMNet: 0.5, 0.7, 1.0; ``train.loss``). ``max_error``
    (``train.loss_max_error``): each head's loss leaves out the pixels its answer misses by that many pixels
    or more (a truncated loss, for a stage that can only move a disparity a little); a head with no pixel
    left adds zero."""
    if kind not in PIXEL_LOSSES:
        raise ConfigError(f"train.loss={kind} is not a loss on the ground truth; expected one of {list(PIXEL_LOSSES)}")
    per_pixel = PIXEL_LOSSES[kind]
    if len(weights) != len(outs):
        raise ConfigError(f"{len(weights)} loss weights for {len(outs)} heads; set train.loss_weights")
    total = torch.zeros((), device=gt.device)
    for w, o in zip(weights, outs, strict=True):
        o = o.float()
        keep = valid if max_error is None else valid & ((o.detach() - gt).abs() < max_error)
        total = total + (w * per_pixel(o[keep], gt[keep]) if keep.any() else o.sum() * 0.0)
    return total


def loss_weights(configured: Any, heads: int) -> list[float]:
    """``train.loss_weights``, or the last ``heads`` of PSMNet's (0.5, 0.7, 1.0)."""
    if configured is not None:
        if len(configured) != heads:
            raise ConfigError(f"train.loss_weights has {len(configured)} values for a model with {heads} heads")
        return [float(w) for w in configured]
    if heads > len(PSMNET_LOSS_WEIGHTS):
        raise ConfigError(f"the model has {heads} heads: set train.loss_weights (one weight per head)")
    return list(PSMNET_LOSS_WEIGHTS[-heads:])


def lr_factor(schedule: str, total: int, warmup: int, decay_steps: Sequence[int] = (), decay: float = 0.1):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "cosine":
            t = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if schedule == "step":  # PSMNet's fine-tuning: the rate drops by `decay` at each listed step
            return decay ** sum(step >= s for s in decay_steps)
        return 1.0

    return f


BUDGET_SKIP, BUDGET_PROBE = 2, 20  # steps: not timed for a time budget (loaders start), then timed to size it


def budget_steps(step: int, spent: float, seconds_per_step: float, budget: float) -> int:
    """The step count at which a run that is at ``step`` after ``spent`` seconds of steps fills ``budget``
    seconds, its remaining steps taking ``seconds_per_step`` each (never fewer than ``step``)."""
    return step + max(0, math.floor((budget - spent) / seconds_per_step))


def freeze_modules(model: torch.nn.Module, names: list[str]) -> list[torch.nn.Module]:
    """Stop training the named submodules (``feature_extraction``, ``aggregation.dres0``, ...): their
    parameters get no gradient and the caller keeps them in eval mode. Returns the modules."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or not n]
    if unknown:
        top = sorted(n for n in modules if n and "." not in n)
        raise ConfigError(f"train.freeze={names}: no module named {', '.join(unknown)}; top-level modules: {top}")
    for n in names:
        for p in modules[n].parameters():
            p.requires_grad_(False)
    if names and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train.freeze={names} leaves nothing to train")
    return [modules[n] for n in names]


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values, so a checkpoint loads with ``weights_only=True``."""
    state = {"torch": torch.get_rng_state(), "numpy": numpy_rng_as_data(cast(tuple, np.random.get_state())),
             "python": random.getstate()}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    # A checkpoint loaded onto a GPU carries the states as CUDA tensors; the generators take CPU bytes.
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(numpy_rng_from_data(state["numpy"]))
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _tuples(x: Any) -> Any:
    """``random.setstate`` wants nested tuples; a state that went through lists is turned back."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


_WORKER_KILLED = re.compile(r"DataLoader worker \(pid \d+\) is killed by signal: (Terminated|Interrupt)")
_WORKER_GONE = re.compile(r"DataLoader worker \(pid\(s\) [\d, ]+\) exited unexpectedly")


def _killed_by_signal(e: BaseException | None) -> re.Match[str] | None:
    """The "killed by signal" report in ``e`` or its causes (PyTorch may re-raise it as "exited unexpectedly")."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, RuntimeError) and (found := _WORKER_KILLED.search(str(e))):
            return found
        e = e.__cause__ or e.__context__
    return None


def _signal_that_killed_workers(e: RuntimeError, received: Any) -> Any:
    """The stop that ``e`` reports when a signal to the whole process group ended the DataLoader workers,
    else None (a real error). PyTorch reports such a death either as "killed by signal: Terminated" or,
    when it notices by a timeout, as "exited unexpectedly", which is the stop only if this process got the
    signal too (``received``)."""
    if found := _killed_by_signal(e):
        return received or (signal.SIGTERM if found.group(1) == "Terminated" else signal.SIGINT)
    if received is not None and _WORKER_GONE.search(str(e)):
        return received
    return None


def _shut_down_workers(batches: Iterator[Any]) -> None:
    """Stop a DataLoader iterator's workers now. When a signal to the process group killed them first,
    PyTorch's SIGCHLD handler raises inside the shutdown (which still completes); left to the iterator's
    ``__del__``, that error would be printed as a traceback. It is the stop the run already handles."""
    shutdown = getattr(batches, "_shutdown_workers", None)  # absent for num_workers=0
    if shutdown is None:
        return
    try:
        shutdown()
    except RuntimeError as e:
        if not _killed_by_signal(e):
            raise


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, Any]]:
    """While active, SIGINT/SIGTERM only set ``flag["signal"]``: the loop finishes its step, writes
    ``last.pt`` and returns. Outside the main thread no handler can be installed; nothing changes."""
    flag: dict[str, Any] = {"signal": None}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            previous[sig] = signal.signal(sig, lambda s, _f: flag.update(signal=s))
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class TrainState:
    """Counters that a checkpoint carries, so a resumed run continues them."""

    step: int = 0
    best_epe: float = float("inf")
    nonfinite_total: int = 0
    nonfinite_run: int = 0
    no_valid_total: int = 0
    no_valid_run: int = 0
    train_seconds: float = 0.0  # wall time of the steps (data + forward/backward), without validation
    timed_steps: int = 0  # steps that train_seconds covers (fewer than step after resuming an older checkpoint)
    sized_total: int | None = None  # the length train.time_budget gave the run
    sized_for: float | None = None  # that budget, minutes


class _Window:
    """Running means of the logged training scalars between two logs."""

    def __init__(self) -> None:
        self.loss = self.epe = 0.0
        self.n = self.epe_n = self.samples = 0
        self.t = time.perf_counter()

    def add(self, loss: float, epe: float, samples: int) -> None:
        """``epe`` is NaN for a batch without ground truth (``train.loss=photometric`` on unlabelled pairs)."""
        self.loss, self.n, self.samples = self.loss + loss, self.n + 1, self.samples + samples
        if math.isfinite(epe):
            self.epe, self.epe_n = self.epe + epe, self.epe_n + 1


# ---- the trainer ---------------------------------------------------------------------------------------


@dataclass
class TrainSummary:
    """What a training run did; ``summary.json`` in the run folder holds the same fields."""

    status: str  # "finished" or "interrupted by signal N"
    step: int  # the run's step count (a resumed run counts its earlier steps too)
    steps_this_process: int
    seconds_this_process: float
    train_seconds: float  # all processes of the run, steps only (data waits included)
    seconds_per_step: float
    total_steps: int  # the planned length: max_steps, epochs, or what train.time_budget sized
    nonfinite_skipped: int  # steps skipped for a non-finite loss
    no_valid_skipped: int  # batches without a valid pixel
    val: Metrics | None  # the last validation's metrics; None = never validated
    best_epe: float  # the best validation EPE of the run (inf = never validated)
    hparams: dict[str, Any]  # what TensorBoard's HParams view shows
    checkpoint: str  # checkpoints/last.pt
    run_dir: str
    rank: int  # this process's DDP rank (0 alone)
    signal: int | None  # the signal that stopped the run (2, 15), None when it finished


class Trainer:
    """Everything a run needs, built in order: data (checked before any model exists), process group,
    model, optimizer; then :meth:`fit`. Each step is :meth:`train_step`; logs, validation and checkpoints
    hang off the step count."""

    def __init__(self, cfg: TrainAppConfig | DictConfig, run_dir: str | os.PathLike) -> None:
        self.cfg = cfg = typed(cfg, TrainAppConfig)  # checked, and attributes from here on
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        samples, val_samples = self._samples()
        self.rank, self.world, self.device = init_distributed(cfg.device)
        self.precision = check_precision(self.device, cfg.precision)  # before any work; auto resolved
        seed_everything(cfg.seed, cfg.deterministic, self.device)
        crop = [int(c) for c in cfg.data.crop_size]
        _check_crop_fits(samples[0], crop)
        self._datasets(samples, val_samples, crop)
        self._build_model(crop)
        self._optimizer()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.state = TrainState()
        self.writer: SummaryWriter | None = None
        self.stop: dict[str, Any] = {"signal": None}
        self.val_metrics: Metrics | None = None

    def _samples(self) -> tuple[list[Sample], list[Sample]]:
        """The training pairs and the validation pairs: the test split of data.root, or of val.root (e.g.
        a fixed benchmark) whole before val.limit; never a training pair."""
        cfg = self.cfg
        samples = dataset_samples(cfg.data, "train")
        if cfg.train.loss != "photometric":
            require_ground_truth(samples, cfg.data.root, f"train.loss={cfg.train.loss}")
        if cfg.val.limit == 0:
            return samples, []
        val_data = cfg.data if cfg.val.root is None else replace(cfg.data, root=cfg.val.root, extra_roots=[], limit=-1)
        # data.root's own validation split: held out from training (real benchmarks) or its test split
        split = "val" if cfg.val.root is None else "test"
        val_samples = apply_limit(dataset_samples(val_data, split, cfg.val.render_pass), cfg.val.limit, "val.limit")
        require_ground_truth(val_samples, val_data.root, "validation (val.limit=0 turns it off)")
        overlap = {s.left.resolve() for s in samples} & {s.left.resolve() for s in val_samples}
        if overlap:
            raise DatasetError(
                f"{len(overlap)} validation pair(s) are also training pairs (first: {sorted(overlap)[0]}); "
                "validate on a held-out split (data.val_fraction, data.val_names) or another val.root"
            )
        return samples, val_samples

    def _datasets(self, samples: list[Sample], val_samples: list[Sample], crop: list[int]) -> None:
        """The training and validation datasets, and the run's length in steps."""
        cfg, t = self.cfg, self.cfg.train
        # data.region narrows training and validation alike (nonocc through the samples, edges here)
        edges, texture = edge_radius_of(cfg.data), texture_region_of(cfg.data)
        self.dataset = StereoDataset(samples, cfg.model.max_disp, crop, cfg.data.augment,
                                     seed=cfg.seed, edge_radius=edges, texture=texture)  # fmt: skip
        val_max = cfg.val.max_disp if cfg.val.max_disp is not None else cfg.model.max_disp
        self.val_dataset = (
            StereoDataset(val_samples, float(val_max), mask=cfg.val.mask, edge_radius=edges, texture=texture)
            if val_samples
            else None
        )
        self.steps_per_epoch = len(self.dataset) // (t.batch_size * self.world)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{len(self.dataset)} training pairs cannot fill one batch of train.batch_size={t.batch_size} "
                f"x {self.world} process(es)"
            )
        self.configured_total = t.max_steps if t.max_steps is not None else t.epochs * self.steps_per_epoch
        self.total = self.configured_total  # train.time_budget may shorten it once the step rate is known
        if t.warmup_steps >= self.total and self.rank == 0:
            log.warning("train.warmup_steps=%d >= the run's %d steps: the learning rate never reaches train.lr",
                        t.warmup_steps, self.total)  # fmt: skip

    def _build_model(self, crop: list[int]) -> None:
        """The network (from train.init_from's weights when given), what stays fixed, the losses' settings,
        and its DDP wrapper."""
        cfg, t = self.cfg, self.cfg.train
        self.model: Any = build_model(cfg.model, cfg)  # its class is the architecture's (ARCHITECTURES)
        if t.init_from:
            source = resolve_checkpoint(t.init_from)  # a path, or shipped
            kept = init_weights(self.model, source, cfg.model)
            if self.rank == 0:
                # the added modules: the longest stage prefix of each weight (subpixel.selector within subpixel)
                parts = " and ".join(sorted({max((p for p in STAGES.values() if k.startswith(p)), key=len,
                                                 default=k.split(".")[0] + ".")[:-1] for k in kept}))  # fmt: skip
                added = f" ({len(kept)} tensors of the added {parts} left at the identity start)" if kept else ""
                log.info("weights from %s%s", source, added)
        # Modules kept in eval mode while the rest trains: frozen ones, and every BatchNorm with train.bn_eval.
        self.fixed = freeze_modules(self.model, list(t.freeze))
        if t.bn_eval:
            self.fixed += [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        self.model = self.model.to(self.device)
        self.model.check_train_shape(t.micro_batch or t.batch_size, *crop)
        self.weights = loss_weights(t.loss_weights, self.model.hourglasses)
        if t.cache_frozen:
            if self.world > 1:
                raise ConfigError("train.cache_frozen=true runs in one process (it trains a light stage alone)")
            check_only_stage_trains(self.model)
            self.weights = self.weights[-1:]  # one answer: the last head's, as at inference
        self.net: Any = self._wrap_ddp()  # the model, or its DDP wrapper

    def _optimizer(self) -> None:
        """Adam over the trainable weights and the learning-rate schedule."""
        t = self.cfg.train
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(trainable, lr=t.lr, betas=(t.betas[0], t.betas[1]), weight_decay=t.weight_decay)
        # The factor reads self.total when called: a time budget may size the run after it started.
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda step: lr_factor(
                str(t.lr_schedule), self.total, t.warmup_steps, list(t.lr_decay_steps), float(t.lr_decay)
            )(step),
        )

    def _wrap_ddp(self) -> torch.nn.Module:
        if self.world == 1:
            return self.model
        if self.cfg.train.sync_bn:
            if self.device.type == "cuda":
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            elif self.rank == 0:
                log.warning("train.sync_bn=true ignored: SyncBatchNorm needs CUDA; each process keeps its BatchNorm")
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # ---- checkpoints ----

    def checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "model_config": to_plain(model_config(self.cfg.model)),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.state.step,
            "epoch": self.state.step // self.steps_per_epoch,
            "rng": rng_state(),
            "best_epe": self.state.best_epe,
            "train_state": asdict(self.state),
            "config": to_plain(self.cfg),
        }

    def save(self, name: str = "last.pt") -> None:
        if self.rank == 0:
            save_checkpoint(self.ckpt_dir / name, self.checkpoint())

    def resume(self) -> None:
        """Continue from ``last.pt`` when ``train.resume`` is set and the file exists."""
        path = self.ckpt_dir / "last.pt"
        if not self.cfg.train.resume:
            return
        if not path.is_file():
            if self.rank == 0:
                log.warning("train.resume=true but %s does not exist: starting from scratch", path)
            return
        ckpt = load_checkpoint(path, self.device)
        diff = config_differences(ckpt["model_config"], self.cfg.model)
        if diff:
            raise CheckpointError(
                f"{path}: the run's model config differs from the checkpoint's ({'; '.join(diff)}); "
                "resume with the same model= and model.* settings, or train in a new run directory"
            )
        load_weights(self.model, ckpt["model"], path)
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        legacy = {"step": ckpt["step"], "best_epe": ckpt.get("best_epe", float("inf"))}  # before train_state existed
        self.state = TrainState(**ckpt.get("train_state", legacy))
        set_rng_state(ckpt["rng"])
        if self.rank == 0:
            log.info("resumed from %s at step %d", path, self.state.step)
        budget = self.cfg.train.time_budget
        if budget and self.state.sized_for == budget and self.state.sized_total is not None:
            self.total = min(self.state.sized_total, self.configured_total)  # as sized in an earlier sitting
        elif budget and self.state.timed_steps >= BUDGET_PROBE:  # a new budget: sized by the run's mean rate
            self._size_to_budget(self.state.train_seconds / self.state.timed_steps, "so far")

    # ---- the loop ----

    def fit(self) -> TrainSummary:
        """Train to ``total`` steps (or a signal); returns (and, on rank 0, writes ``summary.json``) its
        :class:`TrainSummary`."""
        self.resume()
        if self.cfg.train.cache_frozen:  # after resume: the key covers the weights the run has
            self.dataset.priors = frozen_answers(self.model, self.dataset.samples, self.run_dir / "frozen_answers",
                                                 self.device, self.precision, show_progress=self.rank == 0)  # fmt: skip
        start, t0 = self.state.step, time.perf_counter()
        self._open_logs()
        status = "finished"
        try:
            with stop_on_signals() as self.stop:
                try:
                    self._run(start)
                except RuntimeError as e:
                    # A signal sent to the whole process group (a scheduler, `timeout`, `kill -- -PGID`) also
                    # ends the DataLoader workers, and PyTorch reports that as an error: it is the same stop.
                    stop = _signal_that_killed_workers(e, self.stop["signal"])
                    if stop is None:
                        raise
                    self.stop["signal"] = stop
            if self.stop["signal"] is not None:
                status = f"interrupted by signal {self.stop['signal']}"
            elif self.val_dataset is not None:
                self.validate_and_checkpoint()
                self._log_hparams()
            self.save()
            if self.world > 1 and dist.is_initialized():
                # Every rank got through: they meet once more before tearing down. Without this a rank could
                # tear Gloo down while another still finished its last collective: seen once as an abort at
                # exit ("terminate called without an active exception"). Not after an error (the except
                # below): the other rank may be gone, and a barrier would wait for it.
                dist.barrier()
        except BaseException:
            if self.state.step > start:  # keep the progress of this run, then report the error
                self.save()
                if self.rank == 0:
                    log.error("stopped by an error at step %d; wrote %s", self.state.step, self.ckpt_dir / "last.pt")
            raise
        finally:
            if self.writer:
                self.writer.close()
            if self.world > 1 and dist.is_initialized():
                dist.destroy_process_group()
        summary = TrainSummary(
            status=status,
            step=self.state.step,
            steps_this_process=self.state.step - start,
            seconds_this_process=time.perf_counter() - t0,
            train_seconds=self.state.train_seconds,
            seconds_per_step=self.state.train_seconds / max(self.state.timed_steps, 1),
            total_steps=self.total,
            nonfinite_skipped=self.state.nonfinite_total,
            no_valid_skipped=self.state.no_valid_total,
            val=self.val_metrics,
            best_epe=self.state.best_epe,
            hparams=self.hparams(),
            checkpoint=str(self.ckpt_dir / "last.pt"),
            run_dir=str(self.run_dir),
            rank=self.rank,
            signal=int(sig) if isinstance(sig := self.stop["signal"], int) else (15 if sig else None),
        )
        if self.rank == 0:
            # what a study collects from each run; "val" is {} when the run never validated
            write_json(
                self.run_dir / "summary.json", {**asdict(summary), "val": asdict(summary.val) if summary.val else {}}
            )
            log.info("%s at step %d; checkpoints in %s", status, self.state.step, self.ckpt_dir)
        return summary

    def _open_logs(self) -> None:
        if self.rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(to_plain(self.cfg))))
        if self.state.step < self.total or self.val_dataset is not None:  # else there is nothing to log
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _batches(self) -> Generator[dict[str, torch.Tensor], None, None]:
        """Batches from the current step on, epoch after epoch, resuming mid-epoch exactly."""
        t = self.cfg.train
        while True:
            epoch, offset = divmod(self.state.step, self.steps_per_epoch)
            self.dataset.set_epoch(epoch)
            order = epoch_batches(len(self.dataset), t.batch_size, epoch, self.cfg.seed, self.rank, self.world)
            loader = DataLoader(
                self.dataset, batch_sampler=order[offset:], num_workers=t.num_workers,
                pin_memory=self.device.type == "cuda",
            )  # fmt: skip
            batches = iter(loader)
            try:
                yield from batches
            finally:
                _shut_down_workers(batches)

    def _run(self, start: int) -> None:
        t = self.cfg.train
        bar = progress(total=self.total, initial=start, desc="train", unit="step", enabled=self.rank == 0)
        window = _Window()
        batches = self._batches()  # a generator: nothing runs (no DataLoader starts) until the first batch
        sizing = bool(t.time_budget) and self.state.sized_for != t.time_budget
        probe = (self.state.timed_steps + BUDGET_SKIP, self.state.timed_steps + BUDGET_SKIP + BUDGET_PROBE)
        try:
            last = time.perf_counter()
            for batch in batches if self.state.step < self.total else ():
                result = self.train_step(batch)
                now = time.perf_counter()
                self.state.train_seconds += now - last
                self.state.timed_steps += 1
                last = now
                if sizing and self.state.timed_steps == probe[0]:
                    probe_start = self.state.train_seconds
                elif sizing and self.state.timed_steps == probe[1]:
                    rate = (self.state.train_seconds - probe_start) / BUDGET_PROBE
                    self._size_to_budget(all_reduce_sum([rate], self.device, self.world)[0] / self.world, "measured")
                    bar.total = self.total
                    sizing = False
                if result is None:
                    if self.stop["signal"] is not None:
                        break
                    continue
                loss, epe, pred = result
                window.add(loss, epe, batch["left"].shape[0] * self.world)
                scored = f" epe {epe:.3f}" if math.isfinite(epe) else ""  # no EPE without ground truth
                bar.set_postfix_str(f"loss {loss:.3f}{scored}", refresh=False)
                bar.update()
                step = self.state.step
                if step % t.log_every == 0 or step == self.total:
                    self._log_scalars(window)
                    window = _Window()
                if self.writer and t.image_every and step % t.image_every == 0:
                    self._log_images(batch, pred)
                if self.val_dataset is not None and t.val_every and step % t.val_every == 0 and step < self.total:
                    self.validate_and_checkpoint()
                if t.ckpt_every and step % t.ckpt_every == 0:
                    self.save()
                if step >= self.total or self.stop["signal"] is not None:
                    break
                last = time.perf_counter()  # logging, validation and checkpoints do not count as step time
        finally:
            batches.close()  # the workers stop here, not whenever the garbage collector gets to them
            bar.close()

    def _size_to_budget(self, seconds_per_step: float, how: str) -> None:
        """Fit the run's length (and so its lr schedule) to ``train.time_budget`` at this step rate; the
        configured length stays the upper bound. Every rank gets the same rate, so the same length."""
        budget, cap = self.cfg.train.time_budget, self.configured_total
        if budget is None:
            return
        self.total = min(cap, budget_steps(self.state.step, self.state.train_seconds, seconds_per_step, budget * 60))
        self.state.sized_total, self.state.sized_for = self.total, budget
        if self.rank == 0:
            log.info("train.time_budget=%g min: %.3f s/step (%s) -> %d steps (%s)", budget, seconds_per_step, how,
                     self.total, "the configured length" if self.total == cap else f"of at most {cap}")  # fmt: skip

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[float, float, torch.Tensor] | None:
        """One optimizer step; returns (loss, EPE of the last head), both averaged over ranks, and the last
        head's (B, H, W) disparity, or None when the step was skipped (non-finite loss, no valid pixel on
        any rank, or a stop). With ``train.micro_batch`` the batch runs in parts whose gradients add up
        to the whole batch's (each part's loss weighted by its share of the valid pixels)."""
        dev = self.device
        left, right = batch["left"].to(dev, non_blocking=True), batch["right"].to(dev, non_blocking=True)
        gt, valid = batch["disparity"].to(dev), batch["valid"].to(dev)
        self.net.train()
        for m in self.fixed:  # their BatchNorm statistics stay as loaded
            m.eval()
        self.opt.zero_grad(set_to_none=True)
        size = self.cfg.train.micro_batch or left.shape[0]
        parts = [slice(i, i + size) for i in range(0, left.shape[0], size)]
        photometric = self.cfg.train.loss == "photometric"
        # The pixels the loss counts: those with ground truth, or every pixel for the photometric loss (on the
        # views before photometric augmentation); the metrics below stay on the ground truth, if any.
        counted = torch.ones_like(valid) if photometric else valid
        if photometric:
            views = [batch.get(f"{k}_raw", batch[k]).to(dev, non_blocking=True) for k in ("left", "right")]
        n_valid, loss, preds = counted.sum(), torch.zeros((), device=dev), []
        for i, part in enumerate(parts):
            # DDP averages the gradients across ranks once, after the last part.
            sync = i == len(parts) - 1 or self.world == 1
            with contextlib.nullcontext() if sync else self.net.no_sync():
                if "prior" in batch:  # train.cache_frozen: the stage on the frozen network's cached answer
                    prior = batch["prior"][part].to(dev)
                    outs = [self.model.subpixel(prior, *self.model.guides(left[part], right[part]))]
                else:
                    with autocast(dev, self.precision):
                        outs = self.net(left[part], right[part]).heads
                if photometric:
                    part_loss = self._photometric_loss(outs, views[0][part], views[1][part])
                else:
                    part_loss = self._part_loss(outs, gt[part], valid[part])
                if len(parts) > 1:
                    part_loss = part_loss * (counted[part].sum() / n_valid.clamp(min=1))
                self.scaler.scale(part_loss).backward()
            loss += part_loss.detach()
            preds.append(outs[-1].detach())
        pred = preds[0] if len(preds) == 1 else torch.cat(preds)
        has_valid = bool(n_valid > 0)
        # All ranks must skip or stop together, or DDP would hang: [non-finite, stop requested, valid].
        flags = all_reduce_sum(
            [float(not torch.isfinite(loss)), float(self.stop["signal"] is not None), float(has_valid)],
            dev,
            self.world,
        )
        if flags[1] and self.stop["signal"] is None:
            self.stop["signal"] = "from another rank"  # reported as SIGTERM
        if flags[2] == 0 or flags[0]:
            self.opt.zero_grad(set_to_none=True)
        if flags[2] == 0:
            self._skip("no_valid", "batches without a valid ground-truth pixel", "check the dataset's disparities")
            return None
        if flags[0]:
            self._skip("nonfinite", "non-finite losses", "lower train.lr or use fp32")
            return None
        self.state.nonfinite_run = self.state.no_valid_run = 0
        if self.cfg.train.grad_clip:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.state.step += 1
        metrics = disparity_metrics(pred, gt, valid)
        loss_sum, epe_sum, n = all_reduce_sum(
            [float(loss), 0.0 if math.isnan(metrics["epe"]) else metrics["epe"], float(metrics["pixels"] > 0)],
            dev,
            self.world,
        )
        return loss_sum / self.world, epe_sum / n if n else math.nan, pred  # NaN: no ground truth to score

    def _photometric_loss(self, outs: list[torch.Tensor], left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """train.loss=photometric: each head's self-supervised loss (:func:`stereo.losses.photometric_loss`:
        the left view reconstructed from the right, over the pixels each head's own disparity says are
        visible in the right view, plus edge-aware smoothness), weighted per head; no ground truth."""
        total = torch.zeros((), device=left.device)
        for w, disp in zip(self.weights, outs, strict=True):
            disp = disp.float()
            total = total + w * photometric_loss(left, right, disp, ~occluded_from_disparity(disp.detach()))
        return total

    def _part_loss(self, outs: list[torch.Tensor], gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The training loss of one (micro-)batch: every head's per-pixel loss over the valid pixels. Without
        a valid pixel, zero with every head in the graph (:func:`sequence_loss`), so that DDP sees a gradient
        for every parameter."""
        return sequence_loss(outs, gt, valid, self.weights, self.cfg.train.loss_max_error, str(self.cfg.train.loss))

    def _skip(self, kind: str, what: str, advice: str) -> None:
        total, run = getattr(self.state, f"{kind}_total") + 1, getattr(self.state, f"{kind}_run") + 1
        setattr(self.state, f"{kind}_total", total)
        setattr(self.state, f"{kind}_run", run)
        if self.writer:
            self.writer.add_scalar(f"train/{kind}_skipped", total, self.state.step)
        limit = self.cfg.train.max_nonfinite if kind == "nonfinite" else self.cfg.train.max_no_valid
        if run >= limit:
            self.save()
            raise TrainingStopped(
                f"{run} {what} in a row at step {self.state.step} (lr {self.sched.get_last_lr()[0]:g}, precision "
                f"{self.precision}); wrote {self.ckpt_dir / 'last.pt'}. {advice[0].upper()}{advice[1:]}."
            )
        return None

    # ---- logs and validation ----

    def _log_scalars(self, window: _Window) -> None:
        if not self.writer or not window.n:
            return
        step, dt = self.state.step, time.perf_counter() - window.t
        self.writer.add_scalar("train/loss", window.loss / window.n, step)
        if window.epe_n:
            self.writer.add_scalar("train/epe", window.epe / window.epe_n, step)
        self.writer.add_scalar("lr", self.sched.get_last_lr()[0], step)
        self.writer.add_scalar("train/samples_per_s", window.samples / max(dt, 1e-9), step)

    def _log_images(self, batch: dict[str, torch.Tensor], pred: torch.Tensor) -> None:
        """One panel per logged step: left view (before photometric augmentation) | ground truth |
        prediction | error, with its scales as the panel's text."""
        left = batch.get("left_raw", batch["left"])[0].permute(1, 2, 0).numpy()
        gt, valid = batch["disparity"][0].numpy(), batch["valid"][0].numpy()
        writer = self.writer
        if writer is None:
            return
        panels = result_panels(left, pred[0].float().cpu().numpy(), gt, valid, self.model.max_disp)
        row = np.hstack([panels[k] for k in ("left", "gt", "pred", "error")])
        writer.add_image("images/panel", row, self.state.step, dataformats="HWC")
        vmax = float(gt[valid].max()) if valid.any() else float(self.model.max_disp)
        writer.add_text(
            "images/panel",
            f"left | ground truth | prediction | error. Disparity 0..{vmax:.1f} px (magma, bright = near; "
            f"black = no ground truth); error 0..{ERROR_MAX_PX:g} px (viridis, bright = worse).",
            self.state.step,
        )

    def hparams(self) -> dict[str, Any]:
        """The run's comparable settings, flat, for TensorBoard's HParams view."""
        c, attn = self.cfg, self.cfg.model.feature.attention
        return {
            "model": str(c.model.name),
            "attention": ",".join(f"{a.kind}@{a.position}" for a in attn) or "none",
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "seed": int(c.seed),
            "lr": float(c.train.lr),
            "batch": int(c.train.batch_size) * self.world,
            "crop": "x".join(str(v) for v in c.data.crop_size),
            "steps": int(self.state.step),
            "render_pass": str(c.data.render_pass),
            "data": str(c.data.root),
        }

    def _log_hparams(self) -> None:
        if self.writer and self.val_metrics:
            from torch.utils.tensorboard.summary import hparams

            metrics = {f"hparam/val_{k}": v for k, v in self.val_metrics.values().items()}
            # Into this run's own event file (add_hparams would open a second run folder).
            for summary in hparams(self.hparams(), metrics):
                cast(Any, self.writer).file_writer.add_summary(summary)  # typed None until the first event
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, self.state.step)

    def validate_and_checkpoint(self) -> Metrics:
        """Validate on every rank's share, log, and write ``best.pt`` when the EPE improved."""
        v = self.cfg.val
        if self.val_dataset is None:
            raise RuntimeError("validate_and_checkpoint needs a validation split (val.limit=0 has none)")
        r = evaluate_model(self.model, self.val_dataset, self.device, self.precision, v.averaging,
                           self.rank, self.world, desc="validate")  # fmt: skip
        self.val_metrics = r.summary
        if self.writer:
            for k in METRIC_KEYS:
                self.writer.add_scalar(f"val/{k}", getattr(r.summary, k), self.state.step)
        if r.summary.epe < self.state.best_epe:
            self.state.best_epe = r.summary.epe
            self.save("best.pt")
        return r.summary


def _check_crop_fits(sample: Any, crop: list[int]) -> None:
    """The training crop must fit inside the frames (checked on the first pair, before any model)."""
    h, w = imread_checked(sample.left).shape[:2]
    if crop[0] > h or crop[1] > w:
        raise ConfigError(f"data.crop_size=[{crop[0]},{crop[1]}] is larger than the {h}x{w} frames of {sample.left}")


def adopt_init_architecture(cfg: TrainAppConfig) -> str | None:
    """With ``train.init_from``, the run's architecture becomes the checkpoint's when the configured one
    could not start from those weights (``stereo-train`` calls this when the command line chose no
    ``model``/``model.*``: e.g. ``train.init_from=shipped`` fine-tunes the shipped network, refinement
    included). Returns what changed, for the log; None when the run's model stays."""
    from stereo.checkpoint import init_conflicts

    if not cfg.train.init_from:
        return None
    source = resolve_checkpoint(cfg.train.init_from)
    saved = model_config(load_checkpoint(source)["model_config"])
    conflicts = init_conflicts(saved, cfg.model)
    if not conflicts:
        return None
    cfg.model = saved
    return (f"the run takes the architecture of train.init_from={cfg.train.init_from} instead of the configured "
            f"model's (the checkpoint's -> the configured: {'; '.join(conflicts)})")  # fmt: skip


def train(cfg: TrainAppConfig | DictConfig, run_dir: str | os.PathLike) -> TrainSummary:
    """Train as configured; returns a summary (steps done, final validation metrics, paths).

    Config and dataset problems (bad values, missing or empty root, incomplete pairs, a crop that
    cannot train) raise before any model is built or any step is taken.
    """
    trainer = Trainer(cfg, run_dir)
    if trainer.rank != 0:
        return trainer.fit()
    with output_lock(run_dir, "stereo-train"):  # a second trainer here is refused; stale temporaries go
        return trainer.fit()
