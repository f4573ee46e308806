"""Checkpoints are data: every loader, the converter included, refuses a pickle that would run code
unless its user says trust_code=true; stored configs are never resolved; training checkpoints load with
``weights_only=True`` and resume exactly; older checkpoints (NumPy values inside) load safely."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from stereo.checkpoint import convert_checkpoint, load_checkpoint, load_network
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
    for load in (lambda: load_checkpoint(bad), lambda: load_network(bad, torch.device("cpu"))):
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


def test_legacy_checkpoint_with_numpy_values_loads_safely(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["rng"]["numpy"] = np.random.get_state()  # as written before checkpoints were plain data
    ckpt["best_epe"] = np.float64(3.5)
    ckpt["history"] = np.arange(4, dtype=np.float32)
    torch.save(ckpt, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")  # NumPy scalars and arrays are allowed, as data
    assert old["best_epe"] == 3.5 and type(old["best_epe"]) is float
    assert torch.equal(old["history"], torch.arange(4, dtype=torch.float32))
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/convert_checkpoint.py"), f"checkpoint={tmp_path / 'old.pt'}",
         f"out={tmp_path / 'new.pt'}"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    new = torch.load(tmp_path / "new.pt", weights_only=True)  # plain data now: no NumPy global left
    for k, v in ckpt["model"].items():
        assert torch.equal(new["model"][k], v)
    set_rng_state(new["rng"])
    a = np.random.rand(3)
    np.random.set_state(ckpt["rng"]["numpy"])
    assert np.array_equal(a, np.random.rand(3))
    with pytest.raises(CheckpointError, match="choose an output other than the input"):
        convert_checkpoint(tmp_path / "old.pt", tmp_path / "old.pt")


def _original_psmnet_with_payload(checkpoint, out, marker):
    """A file shaped like an original PSMNet ``.tar`` (its marker keys) whose ``train_loss`` is a payload."""
    names = ("module.feature_extraction.firstconv.0.0.weight", "module.dres0.0.0.weight")
    state = {k: torch.zeros(1) for k in names}
    torch.save({"epoch": 10, "state_dict": state, "train_loss": _Payload(marker)}, out)
    return out


@pytest.mark.slow
def test_converter_never_unpickles_without_consent(checkpoint, tmp_path):
    """The converter is where refusals point: without trust_code=true it refuses like every loader, and
    the payload (in a stereo checkpoint or in a file that looks like an original PSMNet one) never runs."""
    marker = tmp_path / "code_ran"
    for bad in (_hostile_copy(checkpoint, tmp_path / "hostile.pt", marker),
                _original_psmnet_with_payload(checkpoint, tmp_path / "pretrained.tar", marker)):  # fmt: skip
        proc = subprocess.run(
            [sys.executable, str(REPO / "scripts/convert_checkpoint.py"), f"checkpoint={bad}",
             f"out={tmp_path / 'new.pt'}"], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"{bad}: refused" in proc.stderr and "trust_code=true" in proc.stderr
        assert "runs whatever code the file holds" in proc.stderr
        assert not marker.exists() and not (tmp_path / "new.pt").exists()
    with pytest.raises(CheckpointError, match="trust_code=true.*runs whatever code"):  # the loaders' hint too
        load_checkpoint(tmp_path / "hostile.pt")
    # With consent the file is unpickled (its payload runs: that is what trusting means), written as data.
    ckpt, what = convert_checkpoint(tmp_path / "hostile.pt", tmp_path / "trusted.pt", trust_code=True)
    assert marker.exists() and "trust_code=true" in what
    assert "extra" in ckpt and torch.load(tmp_path / "trusted.pt", weights_only=True)


def test_interpolations_in_stored_configs_are_refused(checkpoint, tmp_path, monkeypatch):
    """``${oc.env:...}`` in a checkpoint's configs is data, never resolved: the variable cannot reach an
    export's metadata, nor an interpolated max_disp build another network."""
    monkeypatch.setenv("STEREO_SECRET", "hunter2")
    ckpt = torch.load(checkpoint, weights_only=True)
    for key, where in (("max_disp", "model_config"), ("seed", "config")):
        bad = {**ckpt, where: {**ckpt[where], key: "${oc.env:STEREO_SECRET}"}}
        torch.save(bad, tmp_path / "interp.pt")
        for load in (lambda: load_checkpoint(tmp_path / "interp.pt"),
                     lambda: load_network(tmp_path / "interp.pt", torch.device("cpu"))):  # fmt: skip
            with pytest.raises(CheckpointError, match=rf"interp.pt: refused: {where}.{key}=.*interpolation") as e:
                load()
            assert "hunter2" not in str(e.value)


def test_stored_model_config_is_checked_by_the_schema(checkpoint, tmp_path):
    """A stored model config gets the command line's range checks: max_disp=0 cannot build a network."""
    from stereo.errors import ConfigError

    ckpt = torch.load(checkpoint, weights_only=True)
    torch.save({**ckpt, "model_config": {**ckpt["model_config"], "max_disp": 0}}, tmp_path / "zero.pt")
    with pytest.raises((CheckpointError, ConfigError), match=r"zero.pt.*max_disp=0: must be >= 16"):
        load_network(tmp_path / "zero.pt", torch.device("cpu"))
