"""OpenCV SGBM as a method of stereo-eval, checked against an independent computation."""

import cv2
import numpy as np
import pytest

from stereo.config import load_config
from stereo.data.pfm import read_pfm
from stereo.data.sceneflow import discover
from stereo.evaluate import evaluate
from stereo.sgbm import fill_left


def test_fill_left_by_hand():
    d = np.array([[0, 5, 0, 0, 7, 0], [0, 0, 0, 0, 0, 0], [0, 0, 3, 0, 0, 0]], np.float32)
    valid = d > 0
    np.testing.assert_array_equal(fill_left(d, valid), [[5, 5, 5, 5, 7, 7], [0, 0, 0, 0, 0, 0], [3, 3, 3, 3, 3, 3]])


def _reference_epe(sample, num_disp: int) -> tuple[float, float]:
    """SGBM with OpenCV's documented defaults, filled by a per-pixel loop, EPE over 0 < gt < num_disp."""
    left = cv2.imread(str(sample.left))[..., ::-1].copy()
    right = cv2.imread(str(sample.right))[..., ::-1].copy()
    m = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num_disp, blockSize=5, P1=8 * 3 * 25, P2=32 * 3 * 25,
                              disp12MaxDiff=1, preFilterCap=63, uniquenessRatio=10, speckleWindowSize=100,
                              speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)  # fmt: skip
    raw = m.compute(left, right).astype(np.float32) / 16
    filled = raw.copy()
    for y in range(raw.shape[0]):
        good = np.nonzero(raw[y] >= 0)[0]
        for x in range(raw.shape[1]):
            if raw[y, x] < 0:
                before = good[good < x]
                after = good[good > x]
                filled[y, x] = raw[y, before[-1]] if before.size else (raw[y, after[0]] if after.size else 0)
    gt = read_pfm(sample.disparity)
    valid = (gt > 0) & (gt < num_disp)
    return float(np.abs(filled - gt)[valid].mean()), float((raw >= 0).mean())


def test_sgbm_through_stereo_eval(sample_root, tmp_path):
    cfg = load_config("eval", ["method=sgbm", f"data.root={sample_root}", "data.render_pass=clean", "data.limit=2",
                               "max_disp=32", "device=cpu"])  # fmt: skip
    r = evaluate(cfg, tmp_path, show_progress=False, tensorboard=False)
    samples = discover(sample_root, "test", "clean")[:2]
    ref = [_reference_epe(s, 32) for s in samples]
    assert r.epe == pytest.approx(np.mean([e for e, _ in ref]), rel=1e-5)
    assert r.sgbm_density_before_fill == pytest.approx(np.mean([d for _, d in ref]), rel=1e-6)
    assert r.method == "sgbm" and r.checkpoint is None and r.sgbm["num_disparities"] == 32


def test_method_checkpoint_needs_a_checkpoint(sample_root, tmp_path, monkeypatch):
    """Without checkpoint= and without shipped weights (an installation that has none): one clear error."""
    import stereo.weights
    from stereo.errors import ConfigError

    monkeypatch.setattr(stereo.weights, "WEIGHTS_DIR", tmp_path / "no_weights")
    with pytest.raises(ConfigError, match="checkpoint is required"):
        evaluate(load_config("eval", [f"data.root={sample_root}"]), tmp_path)
