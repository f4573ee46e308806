"""Benchmark the data path: PFM reading vs OpenCV, discovery on a 40,000-pair tree, loader throughput.

    python scripts/bench_data.py [repeats=5] [threads=2] [workdir=bench_results/data_work] \
        [out=bench_results/data.json]

- PFM: median time to read a 540x960 disparity PFM with ``read_pfm`` and with ``cv2.imread``.
- Discovery: a tree in the official layout with the full dataset's pair counts (empty files stand in
  for images), walked without cache, then served from the cache.
- Loader: training samples/s at 256x512 crops with augmentation, 0 and 2 workers, on a generated
  540x960 sample.
- Generator: pairs per second (and per core) at 272x480 with 1 and 2 worker processes, written in
  the official layout (``gen_pairs`` pairs per run, median of ``gen_repeats``).
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from stereo.bench.harness import environment, format_table
from stereo.cli import parse_overrides
from stereo.config import to_plain
from stereo.data.dataset import Augmentation, StereoDataset
from stereo.data.pfm import read_pfm, write_pfm
from stereo.data.sceneflow import discover
from stereo.data.synthetic import generate_sceneflow_sample
from stereo.io import write_json
from stereo.progress import progress

# Pair counts of the real Scene Flow dataset (datasets/README.md): FlyingThings3D TRAIN/TEST, Driving, Monkaa.
FULL_COUNTS = {"ft_train": 22390, "ft_test": 4370, "driving": 4400, "monkaa": 8664}


@dataclass
class BenchDataConfig:
    repeats: int = 5
    threads: int = 2
    workdir: str = "bench_results/data_work"
    loader_pairs: int = 12  # generated 540x960 pairs for the loader benchmark
    loader_samples: int = 48  # samples drawn per loader measurement
    batch_size: int = 1
    crop: list = field(default_factory=lambda: [256, 512])
    gen_pairs: int = 24
    gen_repeats: int = 3
    out: str = "bench_results/data.json"


def bench_pfm(work: Path, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    path = work / "disp.pfm"
    write_pfm(path, rng.uniform(0, 200, size=(540, 960)).astype(np.float32))
    out = {}
    for name, fn in (
        ("read_pfm", lambda: read_pfm(path)),
        ("cv2.imread", lambda: cv2.imread(str(path), cv2.IMREAD_UNCHANGED)),
    ):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(20):
                fn()
            times.append((time.perf_counter() - t0) / 20)
        out[name] = statistics.median(times)
    return out


def make_full_tree(root: Path) -> int:
    """Empty placeholder files in the official layout with the full dataset's pair counts."""
    marker = root / "complete"
    if marker.exists():
        return int(marker.read_text())
    shutil.rmtree(root, ignore_errors=True)
    jobs = []
    for split, n in (("TRAIN", FULL_COUNTS["ft_train"]), ("TEST", FULL_COUNTS["ft_test"])):
        for i in range(n):  # 10 frames per sequence, numbered 0006-0015 as in the real data
            seq, f = divmod(i, 10)
            jobs.append(("FlyingThings3D", f"{split}/{'ABC'[seq % 3]}/{seq // 3:04d}", f"{6 + f:04d}"))
    for i in range(FULL_COUNTS["driving"]):
        seq, f = divmod(i, 550)
        combo = f"{('15mm', '35mm')[seq % 2]}_focallength/scene_{('forwards', 'backwards')[seq // 2 % 2]}"
        jobs.append(("Driving", f"{combo}/{('fast', 'slow')[seq // 4 % 2]}", f"{f + 1:04d}"))
    for i in range(FULL_COUNTS["monkaa"]):
        seq, f = divmod(i, 360)
        jobs.append(("Monkaa", f"scene_{seq:02d}", f"{f:04d}"))
    made = set()
    for subset, seq, frame in progress(jobs, desc="placeholder tree", unit="pair"):
        for kind, ext in (("frames_cleanpass", "png"), ("disparity", "pfm")):
            for view in ("left", "right"):
                d = root / subset / kind / seq / view
                if d not in made:
                    d.mkdir(parents=True, exist_ok=True)
                    made.add(d)
                (d / f"{frame}.{ext}").touch()
    marker.write_text(str(len(jobs)))
    return len(jobs)


def bench_discovery(root: Path, repeats: int) -> dict:
    cache_dir = root.parent / "discovery_cache"
    out = {}
    for split in ("train", "test"):
        walk, cached, n = [], [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            n = len(discover(root, split, cache=False))
            walk.append(time.perf_counter() - t0)
        shutil.rmtree(cache_dir, ignore_errors=True)
        discover(root, split, cache_dir=cache_dir)  # writes the cache
        for _ in range(repeats):
            t0 = time.perf_counter()
            discover(root, split, cache_dir=cache_dir)
            cached.append(time.perf_counter() - t0)
        out[split] = {"pairs": n, "walk_s": statistics.median(walk), "cached_s": statistics.median(cached)}
    return out


def bench_loader(root: Path, cfg) -> dict:
    samples = discover(root, "train", cache=False)
    ds = StereoDataset(samples, crop_size=tuple(cfg.crop), augment=Augmentation(), seed=0)
    out = {}
    for workers in (0, 2):
        rates = []
        for r in range(max(cfg.repeats // 2, 2)):
            loader = DataLoader(
                ds,
                batch_size=cfg.batch_size,
                shuffle=True,
                num_workers=workers,
                drop_last=True,
                generator=torch.Generator().manual_seed(r),
            )
            seen, epoch = 0, 0
            t0 = time.perf_counter()
            while seen < cfg.loader_samples:
                ds.set_epoch(epoch)
                for batch in loader:
                    seen += batch["left"].shape[0]
                    if seen >= cfg.loader_samples:
                        break
                epoch += 1
            rates.append(seen / (time.perf_counter() - t0))  # includes worker start-up: honest
        out[f"workers={workers}"] = statistics.median(rates)
    return out


def bench_generator(work: Path, cfg: BenchDataConfig) -> dict:
    """Generated pairs per second at 272x480 (files written) with 1 and 2 processes."""
    out = {}
    for workers in (1, 2):
        times = []
        for r in range(cfg.gen_repeats):
            folder = work / f"gen_{workers}_{r}"
            shutil.rmtree(folder, ignore_errors=True)
            t0 = time.perf_counter()
            generate_sceneflow_sample(folder, height=272, width=480, train_pairs=cfg.gen_pairs, test_pairs=0,
                                      seed=r, workers=workers, progress=False)  # fmt: skip
            times.append(time.perf_counter() - t0)
            shutil.rmtree(folder)
        rate = cfg.gen_pairs / statistics.median(times)
        out[f"{workers} process(es)"] = {"pairs_per_s": rate, "pairs_per_s_per_core": rate / workers}
    return out


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchDataConfig, argv, doc=__doc__)
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.workdir)
    work.mkdir(parents=True, exist_ok=True)

    print("PFM read (540x960) ...", flush=True)
    pfm = bench_pfm(work, cfg.repeats)
    print("discovery on a full-size placeholder tree ...", flush=True)
    pairs = make_full_tree(work / "full_tree")
    disc = bench_discovery(work / "full_tree", cfg.repeats)
    print("loader throughput ...", flush=True)
    sample = work / "sample_540x960"
    generate_sceneflow_sample(sample, train_pairs=cfg.loader_pairs, test_pairs=1, seed=0, replace=True)
    loader = bench_loader(sample, cfg)
    print("generator throughput ...", flush=True)
    gen = bench_generator(work, cfg)

    rows = [
        [
            "PFM read 540x960, read_pfm",
            f"{pfm['read_pfm'] * 1e3:.2f} ms",
            f"{540 * 960 * 4 / 1e6 / pfm['read_pfm']:.0f} MB/s",
        ],
        [
            "PFM read 540x960, cv2.imread",
            f"{pfm['cv2.imread'] * 1e3:.2f} ms",
            f"read_pfm is {pfm['cv2.imread'] / pfm['read_pfm']:.2f}x OpenCV's speed",
        ],
    ]
    for split, d in disc.items():
        rows.append([f"discover {split} ({d['pairs']} pairs), walk", f"{d['walk_s']:.2f} s", ""])
        rows.append([f"discover {split}, from cache", f"{d['cached_s']:.3f} s", ""])
    for k, v in loader.items():
        rows.append(
            [
                f"loader {cfg.crop[0]}x{cfg.crop[1]} +aug, {k}, batch {cfg.batch_size}",
                f"{v:.1f} samples/s",
                "",
            ]
        )
    for k, v in gen.items():
        rows.append([f"generator 272x480, {k}", f"{v['pairs_per_s']:.2f} pairs/s",
                     f"{v['pairs_per_s_per_core']:.2f} pairs/s per core"])  # fmt: skip
    print()
    print(f"Data benchmark ({pairs} placeholder pairs; medians of {cfg.repeats}; {cfg.threads} threads)")
    print(format_table(rows, ["what", "median", "note"]))
    payload = {
        "config": to_plain(cfg),
        "environment": environment(),
        "pfm_read_s": pfm,
        "discovery": disc,
        "loader_samples_per_s": loader,
        "generator": gen,
    }
    write_json(cfg.out, payload)
    print(f"\nwrote {cfg.out}")
    return payload
