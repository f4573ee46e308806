"""No setting is silently ignored and no broken input passes: a setting without effect in its combination
is one warning line, a key given twice is refused, NaN weights stop with the file named, an ONNX opset
the exporter cannot write is one line."""

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from stereo.checkpoint import load_network
from stereo.cli import repeated_keys, unknown_keys
from stereo.config import load_config, runtime_config
from stereo.errors import CheckpointError, ConfigError
from tests.conftest import REPO, make_tiny_cfg


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"exit_head": 2}, "exit_head=2 has no effect with early_exit=off"),
        ({"exit_head": 2, "early_exit": "confidence"}, "exit_head=2 has no effect with early_exit=confidence"),
        ({"exit_threshold": 0.5, "early_exit": "head"}, "exit_threshold=0.5 has no effect with early_exit=head"),
        ({"regression_radius": 4.0}, "regression_radius=4 has no effect with regression=soft_argmin"),
    ],
)
def test_runtime_settings_without_effect_warn_once(caplog, changes, needle):
    with caplog.at_level(logging.WARNING, logger="stereo"):
        runtime_config(None, **changes)
        runtime_config(None, **changes)  # a run reads its runtime several times: one line
    assert [r.getMessage() for r in caplog.records if needle in r.getMessage()] == [
        next(r.getMessage() for r in caplog.records if needle in r.getMessage())
    ]


def test_runtime_settings_in_effect_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="stereo"):
        runtime_config(None, exit_head=2, early_exit="head")
        runtime_config(None, exit_threshold=0.5, early_exit="confidence")
        runtime_config(None, regression_radius=4.0, regression="local")
        runtime_config(None)
    assert not [r for r in caplog.records if "no effect" in r.getMessage()]


def test_min_confidence_without_point_cloud_warns(checkpoint, tmp_path, caplog):
    from stereo.infer import infer

    Image.fromarray(np.full((32, 64, 3), 90, np.uint8)).save(tmp_path / "a.png")
    cfg = load_config("infer", [f"checkpoint={checkpoint}", f"left={tmp_path / 'a.png'}",
                                f"right={tmp_path / 'a.png'}", "device=cpu", "min_confidence=0.5"])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="stereo"):
        infer(cfg, tmp_path / "out")
    assert any("min_confidence=0.5 has no effect without point_cloud=true" in r.getMessage() for r in caplog.records)


def test_warmup_longer_than_the_run_warns(sample_root, tmp_path, caplog):
    from stereo.train import Trainer

    with caplog.at_level(logging.WARNING, logger="stereo"):
        Trainer(make_tiny_cfg(sample_root, max_steps=4, warmup_steps=10, val_every=0), tmp_path / "run")
    assert any("train.warmup_steps=10 >= the run's 4 steps" in r.getMessage() for r in caplog.records)


def test_repeated_keys():
    assert repeated_keys(["a=1", "b=2", "hydra.run.dir=x"]) is None
    line = repeated_keys(["scale=0.5", "device=cpu", "++scale=1.0", "model.max_disp=64", "+model.max_disp=32"])
    assert "scale (scale=0.5, ++scale=1.0)" in line and "model.max_disp (model.max_disp=64, +model.max_disp=32)" in line


def test_unknown_keys_are_named_with_the_nearest_known_ones():
    assert unknown_keys("infer", ["left=a.png", "right=b.png", "output_dir=o", "hydra.run.dir=x", "+extra=1"]) is None
    assert unknown_keys("train", ["experiment=fast", "model.refine_channels=4", "train.freeze=[]"]) is None
    assert unknown_keys("train", ["model=ea_psmnet_light", "model.feature.attention.0.kind=linear"]) is None
    assert unknown_keys("export", ["output=m.onnx"]) is None  # a mandatory key (??? until given)
    line = unknown_keys("infer", ["left=a.png", "output=out"])
    assert line.startswith("invalid command line: unknown key(s): output (did you mean output_dir") and "--help" in line
    line = unknown_keys("train", ["experiment=fast", "model.refine_chanels=4", "zzz=1"])
    assert "model.refine_chanels (did you mean model.refine_channels" in line and "; zzz;" in line
    assert unknown_keys("train", ["model=no_such_model"]) is None  # Hydra names the group's options itself


@pytest.mark.slow
def test_repeated_keys_are_refused_by_apps_and_tools(tmp_path):
    for script, args in (("infer.py", ["left=a.png", "right=b.png", "scale=0.5", "scale=1.0"]),
                         ("make_sceneflow_sample.py", [f"out={tmp_path / 's'}", "seed=1", "seed=2"])):  # fmt: skip
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)  # fmt: skip
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "given more than once" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, str(REPO / "scripts/infer.py"), "left=a.png", "output=o"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and "did you mean output_dir" in proc.stderr and "+output" not in proc.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "runs").exists()


def test_nan_weights_stop_with_the_file_named(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name].clone().fill_(float("nan"))
    torch.save(ckpt, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=rf"nan.pt: 1 weight tensor.s. hold NaN or inf \(first: {name}\)"):
        load_network(tmp_path / "nan.pt", torch.device("cpu"))


def test_onnx_opset_out_of_range_is_one_line(checkpoint, tmp_path):
    pytest.importorskip("onnx")
    from stereo.export import export_onnx

    for opset in (99, 7):
        with pytest.raises(ConfigError, match=rf"opset={opset}: this PyTorch's ONNX exporter writes opsets 13 to"):
            export_onnx(checkpoint, tmp_path / "m.onnx", opset)
    assert not (tmp_path / "m.onnx").exists()


def test_eval_without_any_valid_ground_truth_is_an_error(checkpoint, sample_root, tmp_path):
    """Every metric would be NaN: one line naming the root and the mask instead of a report of NaN."""
    import shutil

    from stereo.data.pfm import read_pfm, write_pfm
    from stereo.errors import DataError
    from stereo.evaluate import evaluate

    root = tmp_path / "SceneFlow"
    shutil.copytree(sample_root, root)
    for pfm in (root / "FlyingThings3D/disparity/TEST").rglob("*.pfm"):
        write_pfm(pfm, np.zeros_like(read_pfm(pfm)))  # 0 = no ground truth under mask=positive
    cfg = load_config("eval", [f"checkpoint={checkpoint}", f"data.root={root}", "device=cpu", "data.limit=2"])
    with pytest.raises(DataError, match=r"none of the 2 test pair\(s\) has a pixel with valid ground truth"):
        evaluate(cfg, tmp_path / "out")
    assert not (tmp_path / "out/metrics.json").exists()
