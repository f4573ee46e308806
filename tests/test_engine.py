"""The one evaluation loop: averaging checked against an independent computation, and training's
validation agreeing with stereo-eval on the same checkpoint and pairs."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from stereo.config import load_config
from stereo.data.dataset import StereoDataset
from stereo.data.pfm import write_pfm
from stereo.data.registry import Sample
from stereo.engine import evaluate_model
from stereo.evaluate import evaluate
from stereo.train import train


class ConstantModel(nn.Module):
    """Predicts the same disparity everywhere; enough to know every error exactly."""

    size_divisor = 1

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, left, right):
        return torch.full(left.shape[:1] + left.shape[2:], self.value)


def _pair(tmp_path, name, gt):
    import cv2

    h, w = gt.shape
    cv2.imwrite(str(tmp_path / f"{name}.png"), np.zeros((h, w, 3), np.uint8))
    write_pfm(tmp_path / f"{name}.pfm", gt)
    return Sample(tmp_path / f"{name}.png", tmp_path / f"{name}.png", tmp_path / f"{name}.pfm", "x")


def test_image_and_pixel_averaging_against_numpy(tmp_path):
    rng = np.random.default_rng(0)
    # Different sizes and different shares of valid pixels: the two averages must differ.
    gts = [rng.uniform(1, 30, (8, 12)), rng.uniform(1, 30, (16, 20)), rng.uniform(1, 30, (4, 6))]
    gts[1][:10] = -5.0  # invalid under "positive"
    gts[2][:, :5] = np.nan
    gts = [g.astype(np.float32) for g in gts]
    samples = [_pair(tmp_path, f"p{i}", g) for i, g in enumerate(gts)]
    ds = StereoDataset(samples, max_disp=32)
    model = ConstantModel(10.0)
    per_image, errs = [], []
    for g in gts:
        valid = np.isfinite(g) & (g > 0) & (g < 32)
        e = np.abs(10.0 - g[valid])
        per_image.append((e.mean(), (e > 3).mean() * 100))
        errs.append(e)
    pooled = np.concatenate(errs)
    img = evaluate_model(model, ds, torch.device("cpu"), averaging="image").summary
    pix = evaluate_model(model, ds, torch.device("cpu"), averaging="pixel").summary
    assert img.epe == pytest.approx(np.mean([p[0] for p in per_image]), rel=1e-5)
    assert img.bad3 == pytest.approx(np.mean([p[1] for p in per_image]), rel=1e-5)
    assert pix.epe == pytest.approx(pooled.mean(), rel=1e-5)
    assert pix.bad3 == pytest.approx((pooled > 3).mean() * 100, rel=1e-5)
    assert abs(img.epe - pix.epe) > 0.05  # the test can tell the two apart
    assert img.pixels == pix.pixels == pooled.size and img.images == 3


def test_worst_k_keeps_the_highest_epe(tmp_path):
    gts = [np.full((4, 4), v, np.float32) for v in (11.0, 20.0, 14.0, 10.5)]
    ds = StereoDataset([_pair(tmp_path, f"w{i}", g) for i, g in enumerate(gts)], max_disp=32)
    r = evaluate_model(ConstantModel(10.0), ds, torch.device("cpu"), keep_worst=2)
    assert [row["index"] for row, _ in r.worst] == [1, 2]
    assert [row["epe"] for row, _ in r.worst] == pytest.approx([10.0, 4.0])


def test_no_valid_pixel_is_nan_not_zero(tmp_path):
    ds = StereoDataset([_pair(tmp_path, "n", np.full((4, 4), -1, np.float32))], max_disp=32)
    s = evaluate_model(ConstantModel(0.0), ds, torch.device("cpu")).summary
    assert s.images == 0 and s.epe != s.epe


def test_final_validation_equals_stereo_eval(sample_root, tmp_path, tiny_cfg):
    """Same checkpoint, same pairs, default protocols: the same EPE in TensorBoard and metrics.json."""
    summary = train(tiny_cfg(sample_root, max_steps=2, val_every=0), tmp_path / "run")
    ecfg = load_config("eval", [f"checkpoint={summary.checkpoint}", f"data.root={sample_root}", "device=cpu",
                                "data.limit=2"])  # fmt: skip
    r = evaluate(ecfg, tmp_path / "eval", show_progress=False, tensorboard=False)
    assert r.pairs == summary.val.pairs == 2
    for k in ("epe", "bad1", "bad3", "d1"):
        assert getattr(r, k) == pytest.approx(getattr(summary.val, k), rel=1e-6, abs=1e-6), k
    assert json.loads((tmp_path / "eval/metrics.json").read_text())["render_pass"] == "final"


def test_validation_on_another_root_equals_stereo_eval_there(sample_root, tmp_path, tiny_cfg):
    """val.root/val.max_disp: validation on a fixed benchmark's pairs with its mask, as stereo-eval sees them."""
    from stereo.data.synthetic import generate_sceneflow_sample

    other = tmp_path / "bench"
    generate_sceneflow_sample(other, height=64, width=128, train_pairs=0, test_pairs=3, seed=99, objects=(3, 12),
                              progress=False)  # fmt: skip
    cfg = tiny_cfg(sample_root, f"val.root={other}", "val.max_disp=20", "val.limit=-1", "data.limit=4",
                   max_steps=2, val_every=0)  # fmt: skip
    summary = train(cfg, tmp_path / "run")
    ecfg = load_config("eval", [f"checkpoint={summary.checkpoint}", f"data.root={other}", "device=cpu",
                                "max_disp=20"])  # fmt: skip
    r = evaluate(ecfg, tmp_path / "eval", show_progress=False, tensorboard=False)
    assert r.pairs == summary.val.pairs == 3  # data.limit=4 does not cut the other root
    for k in ("epe", "bad1", "bad3", "d1"):
        assert getattr(r, k) == pytest.approx(getattr(summary.val, k), rel=1e-6, abs=1e-6), k
    e32 = load_config("eval", [f"checkpoint={summary.checkpoint}", f"data.root={other}", "device=cpu"])
    mask32 = evaluate(e32, tmp_path / "e32", show_progress=False, tensorboard=False)
    assert mask32.epe != pytest.approx(summary.val.epe)  # the bound changed the pixels counted
