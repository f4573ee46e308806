"""Shared fixtures: a generated Scene Flow sample, the tiny training config, a trained checkpoint.

Tests marked ``slow`` (DDP, real signals, subprocess runs, wheel builds) run in CI; ``pytest -m "not slow"``
gives a fast loop.
"""

import os
from pathlib import Path

import pytest
import torch

from stereo.config import load_config
from stereo.data.synthetic import generate_sceneflow_sample

# Tests run on CPU with few threads: the suite's numbers must not depend on the machine's core count.
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]

TINY_TRAIN = [
    "model=ea_psmnet_light",
    "data.crop_size=[32,64]",
    "model.max_disp=32",
    "device=cpu",
    "train.batch_size=2",
    "train.max_steps=4",
    "train.num_workers=0",
    "train.log_every=1",
    "train.image_every=2",
    "train.val_every=2",
    "train.ckpt_every=2",
    "train.lr=1e-3",
    "val.limit=2",
    "deterministic=true",
]


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """A tiny generated Scene Flow sample in the official layout: 12 train pairs, 4 test pairs."""
    root = tmp_path_factory.mktemp("sceneflow") / "SceneFlow"
    generate_sceneflow_sample(
        root, height=64, width=128, train_pairs=12, test_pairs=4, seed=7, objects=(3, 12), progress=False
    )
    return root


DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each device a test should pass on: the CPU always, CUDA where there is one (marker ``cuda``)."""
    return request.param


def make_tiny_cfg(root, *overrides: str, **train_over):
    """The tiny training config on ``root`` with Hydra overrides and ``train.*`` values."""
    cfg = load_config("train", [*TINY_TRAIN, f"data.root={root}", *overrides])
    for k, v in train_over.items():
        cfg.train[k] = v
    return cfg


@pytest.fixture
def tiny_cfg():
    return make_tiny_cfg


@pytest.fixture(scope="session")
def checkpoint(sample_root, tmp_path_factory):
    """A checkpoint of the tiny model after two training steps."""
    from stereo.train import train

    run = tmp_path_factory.mktemp("e2e") / "train"
    train(make_tiny_cfg(sample_root, max_steps=2, val_every=0), run)
    return run / "checkpoints/last.pt"


def train_cli(*args: str) -> list[str]:
    """argv of scripts/train.py in a subprocess with the tiny config; ``args`` replace the tiny config's
    values of the same keys (the apps refuse a key given twice)."""
    import sys

    given = {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a}
    tiny = [o for o in TINY_TRAIN if o.split("=", 1)[0] not in given]
    return [sys.executable, str(REPO / "scripts/train.py"), *tiny, *args]
