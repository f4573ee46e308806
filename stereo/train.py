"""Training on Scene Flow: one function, :func:`train`, driven by the composed ``conf/train.yaml``.

Single process or DDP under ``torchrun`` (NCCL on CUDA, Gloo on CPU); fp32, bf16 or fp16 (with a
grad scaler); TensorBoard logs, atomic checkpoints, exact resume and clean stops on SIGINT/SIGTERM.
Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from stereo.checkpoint import load_checkpoint, save_checkpoint
from stereo.data.dataset import Augmentation, StereoDataset
from stereo.data.sceneflow import discover
from stereo.device import autocast, resolve_device
from stereo.metrics import METRIC_KEYS, disparity_metrics
from stereo.models import build_model, predict
from stereo.progress import Progress
from stereo.visualize import colorize_disparity, colorize_error

log = logging.getLogger(__name__)


class TrainingStopped(RuntimeError):
    """Too many non-finite losses in a row; a checkpoint was written before stopping."""


# ---- distributed -------------------------------------------------------------------------------------


def _init_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _all_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ---- data order --------------------------------------------------------------------------------------


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """This rank's index batches for an epoch: a seeded permutation cut into global batches of
    ``batch_size * world``, each rank taking its slice; the incomplete last batch is dropped."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    per_step = batch_size * world
    return [
        perm[s * per_step + rank * batch_size : s * per_step + (rank + 1) * batch_size] for s in range(n // per_step)
    ]


# ---- checkpoints -------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- the loop ----------------------------------------------------------------------------------------


def sequence_loss(outs: list[torch.Tensor], gt: torch.Tensor, valid: torch.Tensor, weights) -> torch.Tensor:
    """Weighted smooth L1 over valid pixels, one weight per head (PSMNet: 0.5, 0.7, 1.0)."""
    if len(weights) != len(outs):
        raise ValueError(f"{len(weights)} loss weights for {len(outs)} heads; set model.loss_weights")
    return sum(w * F.smooth_l1_loss(o.float()[valid], gt[valid]) for w, o in zip(weights, outs, strict=True))


def _lr_lambda(schedule: str, total: int, warmup: int):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        if schedule == "cosine":
            t = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        raise ValueError(f"train.lr_schedule must be 'constant' or 'cosine', got {schedule!r}")

    return f


def validate(model, samples, max_disp: float, device, precision: str, rank: int = 0, world: int = 1) -> dict:
    """Per-image metrics averaged over images (0 < gt < max_disp), split over ranks and reduced."""
    ds = StereoDataset(samples, max_disp=max_disp)
    sums = [0.0] * (len(METRIC_KEYS) + 1)
    for i in range(rank, len(ds), world):
        item = ds[i]
        left, right = item["left"][None].to(device), item["right"][None].to(device)
        with autocast(device, precision):
            pred = predict(model, left, right)[0].float().cpu()
        m = disparity_metrics(pred, item["disparity"], item["valid"])
        if m["pixels"]:
            for j, k in enumerate(METRIC_KEYS):
                sums[j] += m[k]
            sums[-1] += 1
    sums = _all_sum(sums, device, world)
    n = sums[-1]
    return {**{k: sums[j] / n if n else float("nan") for j, k in enumerate(METRIC_KEYS)}, "images": int(n)}


def train(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, Any]:
    """Train as configured; returns a summary (steps done, final validation metrics, paths).

    Dataset problems (missing or empty root, incomplete pairs) raise before any model is built.
    """
    run_dir = Path(run_dir)
    t_cfg, d_cfg, m_cfg = cfg.train, cfg.data, cfg.model
    samples = discover(d_cfg.root, "train", d_cfg.render_pass, skip_missing=d_cfg.skip_missing)
    val_samples = []
    if cfg.val.limit != 0:
        val_samples = discover(d_cfg.root, "test", cfg.val.render_pass or d_cfg.render_pass, skip_missing=True)
        val_samples = val_samples[: cfg.val.limit] if cfg.val.limit > 0 else val_samples

    rank, world, device = _init_distributed(cfg.device)
    autocast(device, cfg.precision)  # validates the precision for this device before any work
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    dataset = StereoDataset(
        samples,
        max_disp=m_cfg.max_disp,
        crop_size=d_cfg.crop_size,
        augment=Augmentation() if d_cfg.augment else None,
        seed=cfg.seed,
    )
    steps_per_epoch = len(dataset) // (t_cfg.batch_size * world)
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(dataset)} training pairs cannot fill one batch of {t_cfg.batch_size} x {world} process(es)"
        )
    total = t_cfg.max_steps if t_cfg.max_steps is not None else t_cfg.epochs * steps_per_epoch

    model = build_model(m_cfg).to(device)
    if cfg.channels_last:
        model.feature_extraction.to(memory_format=torch.channels_last)
    if world > 1 and t_cfg.sync_bn:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif rank == 0:
            log.warning("train.sync_bn=true ignored: SyncBatchNorm needs CUDA; each process keeps its BatchNorm")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = torch.optim.Adam(model.parameters(), lr=t_cfg.lr, betas=tuple(t_cfg.betas), weight_decay=t_cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(t_cfg.lr_schedule, total, t_cfg.warmup_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    weights = list(m_cfg.loss_weights)

    ckpt_dir = run_dir / "checkpoints"
    step, best = 0, float("inf")
    if t_cfg.resume and (ckpt_dir / "last.pt").is_file():
        ckpt = load_checkpoint(ckpt_dir / "last.pt", device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        step, best = ckpt["step"], ckpt.get("best_epe", best)
        _set_rng_state(ckpt["rng"])
        if rank == 0:
            log.info("resumed from %s at step %d", ckpt_dir / "last.pt", step)
    elif t_cfg.resume and rank == 0:
        log.warning("train.resume=true but %s does not exist: starting from scratch", ckpt_dir / "last.pt")

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        writer = SummaryWriter(str(run_dir / "tensorboard"))

    def state(epoch: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "model_config": OmegaConf.to_container(m_cfg, resolve=True),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "epoch": epoch,
            "rng": _rng_state(),
            "best_epe": best,
            "config": OmegaConf.to_container(cfg, resolve=True),
        }

    stop = {"signal": None}
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):  # finish the step, write last.pt, then return
        try:
            handlers[sig] = signal.signal(sig, lambda s, _f: stop.update(signal=s))
        except ValueError:  # not the main thread: no signal handling
            pass

    nonfinite_total, nonfinite_run = 0, 0
    val_metrics: dict[str, float] = {}
    bar = Progress(total=total, desc="train", unit="step", enabled=rank == 0)
    bar.n = step
    window = {"loss": 0.0, "epe": 0.0, "n": 0, "t": time.perf_counter(), "samples": 0}
    status = "finished"
    try:
        while step < total and stop["signal"] is None:
            epoch, offset = divmod(step, steps_per_epoch)
            dataset.set_epoch(epoch)
            batches = epoch_batches(len(dataset), t_cfg.batch_size, epoch, cfg.seed, rank, world)[offset:]
            loader = DataLoader(
                dataset,
                batch_sampler=batches,
                num_workers=t_cfg.num_workers,
                pin_memory=device.type == "cuda",
                persistent_workers=False,
            )
            net.train()
            for batch in loader:
                left, right = (
                    batch["left"].to(device, non_blocking=True),
                    batch["right"].to(device, non_blocking=True),
                )
                gt, valid = batch["disparity"].to(device), batch["valid"].to(device)
                with autocast(device, cfg.precision):
                    outs = net(left, right)
                loss = sequence_loss(outs, gt, valid, weights) if valid.any() else outs[-1].sum() * 0.0
                # [non-finite, stop requested]: all ranks skip or stop together, or DDP would hang.
                flags = torch.tensor([float(not torch.isfinite(loss)), float(stop["signal"] is not None)])
                if world > 1:
                    flags = flags.to(device)
                    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                if flags[1].item() and stop["signal"] is None:
                    stop["signal"] = "from another rank"
                opt.zero_grad(set_to_none=True)
                if flags[0].item():
                    nonfinite_total += 1
                    nonfinite_run += 1
                    if writer:
                        writer.add_scalar("train/nonfinite_skipped", nonfinite_total, step)
                    if nonfinite_run >= t_cfg.max_nonfinite:
                        if rank == 0:
                            save_checkpoint(ckpt_dir / "last.pt", state(epoch))
                        raise TrainingStopped(
                            f"{nonfinite_run} non-finite losses in a row at step {step} (lr {sched.get_last_lr()[0]:g},"
                            f" precision {cfg.precision}); wrote {ckpt_dir / 'last.pt'}. Lower train.lr or use fp32."
                        )
                    continue
                nonfinite_run = 0
                scaler.scale(loss).backward()
                if t_cfg.grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t_cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                with torch.no_grad():
                    m = disparity_metrics(outs[-1].detach(), gt, valid)
                loss_v, epe_v, n_v = _all_sum(
                    [loss.item(), 0.0 if math.isnan(m["epe"]) else m["epe"], float(m["pixels"] > 0)],
                    device,
                    world,
                )
                window["loss"] += loss_v / world
                window["epe"] += epe_v / max(n_v, 1)
                window["n"] += 1
                window["samples"] += left.shape[0] * world
                bar.set_postfix(f"loss {loss_v / world:.3f} epe {epe_v / max(n_v, 1):.3f}")
                bar.update()
                if writer and (step % t_cfg.log_every == 0 or step == total):
                    dt = time.perf_counter() - window["t"]
                    writer.add_scalar("train/loss", window["loss"] / window["n"], step)
                    writer.add_scalar("train/epe", window["epe"] / window["n"], step)
                    writer.add_scalar("lr", sched.get_last_lr()[0], step)
                    writer.add_scalar("train/samples_per_s", window["samples"] / max(dt, 1e-9), step)
                    window = {"loss": 0.0, "epe": 0.0, "n": 0, "t": time.perf_counter(), "samples": 0}
                if writer and t_cfg.image_every and step % t_cfg.image_every == 0:
                    _log_images(writer, batch, outs[-1].detach(), step, m_cfg.max_disp)
                if val_samples and t_cfg.val_every and step % t_cfg.val_every == 0 and step < total:
                    val_metrics, best = _validate_and_log(
                        net,
                        model,
                        val_samples,
                        cfg,
                        device,
                        rank,
                        world,
                        writer,
                        step,
                        best,
                        ckpt_dir,
                        state,
                        epoch,
                    )
                if rank == 0 and t_cfg.ckpt_every and step % t_cfg.ckpt_every == 0:
                    save_checkpoint(ckpt_dir / "last.pt", state(epoch))
                if step >= total or stop["signal"] is not None:
                    break
        epoch = step // steps_per_epoch
        if stop["signal"] is not None:
            status = f"interrupted by signal {stop['signal']}"
        elif val_samples:
            val_metrics, best = _validate_and_log(
                net, model, val_samples, cfg, device, rank, world, writer, step, best, ckpt_dir, state, epoch
            )
        if rank == 0:
            save_checkpoint(ckpt_dir / "last.pt", state(epoch))
    finally:
        bar.close()
        for sig, h in handlers.items():
            signal.signal(sig, h)
        if writer:
            writer.close()
    if rank == 0:
        log.info("%s at step %d; checkpoints in %s", status, step, ckpt_dir)
    return {
        "status": status,
        "step": step,
        "nonfinite_skipped": nonfinite_total,
        "val": val_metrics,
        "best_epe": best,
        "checkpoint": str(ckpt_dir / "last.pt"),
        "run_dir": str(run_dir),
        "rank": rank,
    }


def _validate_and_log(net, model, val_samples, cfg, device, rank, world, writer, step, best, ckpt_dir, state, epoch):
    metrics = validate(model, val_samples, cfg.model.max_disp, device, cfg.precision, rank, world)
    net.train()
    if writer:
        for k in METRIC_KEYS:
            writer.add_scalar(f"val/{k}", metrics[k], step)
    if rank == 0 and metrics["epe"] < best:
        best = metrics["epe"]
        save_checkpoint(ckpt_dir / "best.pt", {**state(epoch), "best_epe": best})
    return metrics, best


def _log_images(writer, batch, pred: torch.Tensor, step: int, max_disp: float) -> None:
    left = (batch["left"][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    gt, valid = batch["disparity"][0].numpy(), batch["valid"][0].numpy()
    p = pred[0].float().cpu().numpy()
    vmax = float(gt[valid].max()) if valid.any() else max_disp
    writer.add_image("images/left", left, step, dataformats="HWC")
    writer.add_image("images/pred", colorize_disparity(p, 0, vmax), step, dataformats="HWC")
    writer.add_image("images/gt", colorize_disparity(np.where(valid, gt, np.nan), 0, vmax), step, dataformats="HWC")
    writer.add_image("images/error", colorize_error(np.abs(p - gt), valid), step, dataformats="HWC")
