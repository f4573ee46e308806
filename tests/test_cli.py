"""The real entry points in subprocesses: one clear line for every user mistake, nothing overwritten,
crash safety under kill -9, and a wheel install that works from any directory."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stereo.checkpoint import load_checkpoint
from stereo.data.pfm import read_pfm
from stereo.io import TMP_MARK
from stereo.train import train
from tests.conftest import REPO, TINY_TRAIN, make_tiny_cfg, train_cli

pytestmark = pytest.mark.slow


def _run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def _one_line_error(proc, *needles):
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for n in needles:
        assert n in proc.stderr, proc.stderr[-2000:]


def test_train_config_mistakes(sample_root, tmp_path):
    base = [f"data.root={sample_root}", f"hydra.run.dir={tmp_path / 'run'}"]
    t0 = time.time()
    _one_line_error(
        _run(train_cli(*base, "train.batch_size=-2")), "error: invalid config: train.batch_size=-2: must be >= 1"
    )
    assert time.time() - t0 < 120  # no hang
    _one_line_error(_run(train_cli(*base, "device=gpu")), "device=gpu: expected auto, cpu, cuda, cuda:N or mps")
    proc = _run(train_cli(*base, "train.batch_size=abc"))  # a type error, reported by Hydra while composing
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "train.batch_size" in proc.stderr
    _one_line_error(
        _run(train_cli(*base, "data.crop_size=[40,64]")), "data.crop_size=[40,64]: must be a multiple of 16"
    )
    assert not (tmp_path / "run/checkpoints").exists()


def test_eval_and_infer_mistakes(checkpoint, sample_root, tmp_path):
    ev = [sys.executable, str(REPO / "scripts/evaluate.py"), f"data.root={sample_root}", "device=cpu"]
    shipped = _run([*ev, f"hydra.run.dir={tmp_path / 'shipped'}"])  # no checkpoint=: the packaged weights
    ev.append(f"hydra.run.dir={tmp_path / 'e'}")
    assert shipped.returncode == 0 and "weights shipped with the package" in shipped.stdout + shipped.stderr
    _one_line_error(_run([*ev, f"checkpoint={checkpoint}", "max_disp=0"]), "max_disp=0.0: must be > 0")
    _one_line_error(_run([*ev, f"checkpoint={tmp_path / 'nope.pt'}"]), f"checkpoint not found: {tmp_path / 'nope.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    _one_line_error(_run([*ev, f"checkpoint={tmp_path / 'junk.pt'}"]), "junk.pt: cannot read checkpoint")

    left, right = tmp_path / "l", tmp_path / "r"
    for d in (left, right):
        d.mkdir()
        cv2.imwrite(str(d / "0001.png"), np.full((32, 48, 3), 90, np.uint8))
    original = (left / "0001.png").read_bytes()
    inf = [sys.executable, str(REPO / "scripts/infer.py"), f"checkpoint={checkpoint}", f"left={left}",
           f"right={right}", "device=cpu"]  # fmt: skip
    _one_line_error(_run([*inf, f"output_dir={left}"]), "refusing to write over input images", "0001.png")
    assert (left / "0001.png").read_bytes() == original
    _one_line_error(_run([*inf, f"output_dir={tmp_path / 'o'}", "focal_px=-700", "baseline=0.5"]),
                    "focal_px=-700.0: must be > 0")  # fmt: skip
    _one_line_error(_run([*inf, f"output_dir={tmp_path / 'o'}", "baseline=abc"]), "baseline")
    cv2.imwrite(str(left / "0001.jpg"), np.full((32, 48, 3), 90, np.uint8))
    _one_line_error(_run([*inf, f"output_dir={tmp_path / 'o'}"]), "output name(s) would be shared", "0001.jpg")
    (left / "0001.jpg").unlink()
    (tmp_path / "afile").write_text("x")
    _one_line_error(_run([*inf, f"output_dir={tmp_path / 'afile'}"]), "exists and is not a folder")
    ok = _run([*inf, f"output_dir={tmp_path / 'o'}"])
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "0001.pfm",
        "0001.png",
        "0001_color.png",
        "0001_legend.png",
        "pairs.json",  # each pair's scale, offset and what its matches measured
    ]


def test_kill9_at_any_moment_leaves_a_loadable_checkpoint_and_exact_resume(sample_root, tmp_path):
    """kill -9 a real training process mid-run; a partial write is simulated too (the window of a real
    kill inside the rename-protected write is too short to hit on purpose). Resuming in deterministic
    mode ends with the weights of an uninterrupted run."""
    steps = 10
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        train_cli(f"data.root={sample_root}", f"train.max_steps={steps}", "train.ckpt_every=1", "train.val_every=0",
                  "val.limit=0", f"hydra.run.dir={run}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 180
    last = run / "checkpoints/last.pt"
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and load_checkpoint(last)["step"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(last)["step"]  # loadable, whatever the moment of the kill
    assert 3 <= killed_at < steps
    partial = run / "checkpoints" / f".last{TMP_MARK}999-abcdef.pt"
    partial.write_bytes(last.read_bytes()[:1000])  # what a kill during torch.save would leave
    resumed = train(make_tiny_cfg(sample_root, "val.limit=0", max_steps=steps, resume=True, val_every=0), run)
    assert resumed.step == steps and not partial.exists()
    straight = train(make_tiny_cfg(sample_root, "val.limit=0", max_steps=steps, val_every=0), tmp_path / "straight")
    a = load_checkpoint(straight.checkpoint)["model"]
    b = load_checkpoint(resumed.checkpoint)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _isolated_venv(where):
    """A venv that sees this environment's dependencies (torch, numpy, ...) through a plain path entry, but
    not its ``.pth`` files: the editable install's import hook, which would serve ``stereo`` from the
    checkout and hide what the wheel lacks, is never loaded there."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    py = where / "bin" / "python"
    own = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    (Path(own) / "_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return py


def test_wheel_install_runs_from_any_directory(checkpoint, sample_root, tmp_path):
    """The built wheel, installed into a venv without the editable hook, runs every console script from a
    folder outside the checkout: it ships every package and the configs."""
    wheels, src = tmp_path / "wheels", tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "stereo", "conf"):  # setuptools writes build/ there
        if (REPO / name).exists():
            (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, src / name)
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                  str(src)])  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("stereo-*.whl"))
    py = _isolated_venv(tmp_path / "venv")
    inst = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)])
    assert inst.returncode == 0, inst.stderr[-2000:]
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = _run([str(py), "-c", "import sys, stereo, stereo.config as c; print(stereo.__file__); print(c.CONF_DIR); "
                  "print(any('editable' in type(f).__name__.lower() or 'editable' in repr(f) for f in sys.meta_path))"],
                 cwd=away, env=env)  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]
    where, conf, hooked = probe.stdout.split()
    venv = (tmp_path / "venv").resolve()
    assert Path(where).resolve().is_relative_to(venv) and Path(conf).resolve().is_relative_to(venv)
    assert hooked == "False"  # the checkout cannot serve a module the wheel lacks
    bin_ = tmp_path / "venv" / "bin"

    proc = _run([bin_ / "stereo-eval", f"checkpoint={checkpoint}", f"data.root={sample_root}", "device=cpu",
                 "data.limit=1", "hydra.run.dir=out"], cwd=away, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (away / "out/metrics.json").is_file() and "EPE px" in proc.stdout
    # No checkpoint=: the weights inside the wheel.
    s = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[0]
    proc = _run([bin_ / "stereo-infer", f"left={s}", f"right={s.parent.parent / 'right' / s.name}", "device=cpu",
                 "output_dir=inferred"], cwd=away, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(venv) in proc.stdout + proc.stderr  # the shipped weights, named at their installed path
    disp = read_pfm(away / "inferred" / f"{s.stem}.pfm")
    assert disp.shape == (64, 128) and np.isfinite(disp).all() and disp.max() > disp.min() >= 0
    tiny = [o for o in TINY_TRAIN if not o.startswith(("train.max_steps", "val.limit"))]
    proc = _run([bin_ / "stereo-train", *tiny, f"data.root={sample_root}", "train.max_steps=2",
                 "val.limit=1", "hydra.run.dir=trained"], cwd=away, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(away / "trained/checkpoints/last.pt")["step"] == 2
    if importlib.util.find_spec("onnx") is not None:
        proc = _run([bin_ / "stereo-export", f"checkpoint={checkpoint}", "output=model.onnx"], cwd=away, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (away / "model.onnx").stat().st_size > 10_000


def test_no_run_folder_when_output_dir_is_given_or_the_run_fails(checkpoint, sample_root, tmp_path):
    s = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[0]
    work = tmp_path / "cwd"
    work.mkdir()
    base = [sys.executable, str(REPO / "scripts/infer.py"), f"checkpoint={checkpoint}", f"left={s}",
            f"right={s.parent.parent / 'right' / s.name}", "device=cpu"]  # fmt: skip
    ok = _run([*base, f"output_dir={tmp_path / 'out'}"], cwd=work)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        *(f"{s.stem}{x}" for x in (".pfm", ".png", "_color.png", "_legend.png")),
        "pairs.json",
    ]
    # Missing required key (checkpoint= falls back to the shipped weights, so use right=); missing file.
    _one_line_error(_run([sys.executable, str(REPO / "scripts/infer.py"), f"left={s}"], cwd=work), "right is required")
    ev = _run([sys.executable, str(REPO / "scripts/evaluate.py"), f"data.root={sample_root}",
               f"checkpoint={tmp_path / 'nope.pt'}"], cwd=work)  # fmt: skip
    _one_line_error(ev, "nope.pt")
    assert list(work.iterdir()) == []  # neither runs/infer/<time> nor runs/eval/<time> was left behind


def test_init_from_shipped_takes_the_shipped_architecture(sample_root, tmp_path):
    """The documented fine-tuning commands run as written: with train.init_from=shipped and no model
    chosen on the command line, the run is the shipped network (its refinement included), also under an
    overlay that names another model; a model chosen by the user is kept, and refused with the hint."""
    from stereo.config import load_config
    from stereo.train import adopt_init_architecture
    from stereo.weights import resolve_checkpoint

    shipped_model = load_checkpoint(resolve_checkpoint("shipped"))["model_config"]
    cfg = load_config("train", ["experiment=finetune_kitti", "train.init_from=shipped"])
    assert cfg.model.name == "psmnet"  # the overlay's model
    said = adopt_init_architecture(cfg)
    assert "takes the architecture of train.init_from=shipped instead of the configured model's" in said
    assert "(the checkpoint's -> the configured: " in said and "max_disp: 128 -> 192" in said  # psmnet's 192
    assert cfg.model.name == shipped_model["name"] and str(cfg.model.refine) == shipped_model["refine"]
    kept = load_config("train", ["model=ea_psmnet_light", "model.refine=modes"])  # nothing to init: unchanged
    assert adopt_init_architecture(kept) is None and kept.model.max_disp == 128

    small = [o for o in TINY_TRAIN if not o.startswith(("model", "data.crop_size", "train.max_steps", "val.limit"))]
    base = [sys.executable, str(REPO / "scripts/train.py"), *small, f"data.root={sample_root}",
            "data.crop_size=[64,128]", "train.init_from=shipped", "train.max_steps=1", "val.limit=0"]  # fmt: skip
    proc = _run([*base, f"hydra.run.dir={tmp_path / 'a'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "takes the architecture of train.init_from=shipped" in proc.stdout + proc.stderr
    assert load_checkpoint(tmp_path / "a/checkpoints/last.pt")["model_config"]["refine"] == shipped_model["refine"]
    _one_line_error(_run([*base, "model=ea_psmnet_light", f"hydra.run.dir={tmp_path / 'b'}"]),
                    "add model.refine=" + shipped_model["refine"])  # fmt: skip
