"""Checkpoints are data: every loader refuses a pickle that would run code, training checkpoints load
with ``weights_only=True`` and resume exactly, and older checkpoints convert once, knowingly."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from stereo.checkpoint import convert_legacy_checkpoint, load_checkpoint, load_model
from stereo.errors import CheckpointError
from stereo.train import rng_state, set_rng_state, train
from tests.conftest import REPO, make_tiny_cfg


class _Payload:
    """Unpickling this creates a folder: the observable side effect of code run by ``torch.load``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _hostile_copy(checkpoint, out, marker):
    """A real checkpoint (its weights load into the model) that also carries a payload."""
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["extra"] = _Payload(marker)
    torch.save(ckpt, out)
    return out


def test_checkpoint_with_payload_is_refused_by_every_loader(checkpoint, tmp_path):
    marker = tmp_path / "code_ran"
    bad = _hostile_copy(checkpoint, tmp_path / "hostile.pt", marker)
    for load in (lambda: load_checkpoint(bad), lambda: load_model(bad, torch.device("cpu"))):
        with pytest.raises(CheckpointError, match="hostile.pt: refused: .*could run code.*convert_checkpoint.py"):
            load()
    assert not marker.exists()


def test_resume_refuses_payload_before_running_it(sample_root, tmp_path):
    train(make_tiny_cfg(sample_root, max_steps=2, val_every=0), tmp_path / "run")
    last = tmp_path / "run/checkpoints/last.pt"
    marker = tmp_path / "code_ran"
    _hostile_copy(last, last, marker)
    with pytest.raises(CheckpointError, match="last.pt: refused"):
        train(make_tiny_cfg(sample_root, max_steps=4, val_every=0, resume=True), tmp_path / "run")
    assert not marker.exists()


@pytest.mark.slow
def test_infer_cli_refuses_payload_in_one_line(checkpoint, sample_root, tmp_path):
    marker = tmp_path / "code_ran"
    bad = _hostile_copy(checkpoint, tmp_path / "hostile.pt", marker)
    left = next((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))
    right = left.parent.parent / "right" / left.name
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/infer.py"), f"left={left}", f"right={right}", f"checkpoint={bad}",
         f"output_dir={tmp_path / 'out'}", "device=cpu", f"hydra.run.dir={tmp_path / 'h'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "hostile.pt: refused" in proc.stderr
    assert not marker.exists() and not list((tmp_path / "out").rglob("*.pfm"))


def test_training_checkpoint_is_plain_data_and_restores_every_generator(checkpoint):
    ckpt = torch.load(checkpoint, weights_only=True)  # raises if anything but tensors and plain values
    assert isinstance(ckpt["rng"]["numpy"]["keys"], torch.Tensor)
    np.random.seed(3)
    saved = rng_state()
    expected = (np.random.rand(5), torch.rand(5), __import__("random").random())
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(saved)
    again = (np.random.rand(5), torch.rand(5), __import__("random").random())
    assert np.array_equal(expected[0], again[0]) and torch.equal(expected[1], again[1]) and expected[2] == again[2]


def test_legacy_checkpoint_is_refused_with_the_converter_and_converts(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["rng"]["numpy"] = np.random.get_state()  # as written before checkpoints were plain data
    ckpt["best_epe"] = np.float64(3.5)
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"old.pt: refused.*convert_checkpoint.py checkpoint=.*old.pt out="):
        load_checkpoint(tmp_path / "old.pt")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/convert_checkpoint.py"), f"checkpoint={tmp_path / 'old.pt'}",
         f"out={tmp_path / 'new.pt'}"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    new = load_checkpoint(tmp_path / "new.pt")
    assert new["best_epe"] == 3.5 and type(new["best_epe"]) is float
    for k, v in ckpt["model"].items():
        assert torch.equal(new["model"][k], v)
    set_rng_state(new["rng"])
    a = np.random.rand(3)
    np.random.set_state(ckpt["rng"]["numpy"])
    assert np.array_equal(a, np.random.rand(3))
    with pytest.raises(CheckpointError, match="choose an output other than the input"):
        convert_legacy_checkpoint(tmp_path / "old.pt", tmp_path / "old.pt")
