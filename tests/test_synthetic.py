import json

import cv2
import numpy as np
import pytest

from stereo.data.images import read_rgb
from stereo.data.pfm import read_pfm
from stereo.data.sceneflow import discover
from stereo.data.synthetic import generate_sceneflow_sample, render_pair


def _views(sample):
    disp_right = sample.disparity.parent.parent / "right" / sample.disparity.name
    return read_rgb(sample.left), read_rgb(sample.right), read_pfm(sample.disparity), read_pfm(disp_right)


def test_layout_is_official(sample_root):
    manifest = json.loads((sample_root / "sample.json").read_text())
    assert manifest["height"] == 64 and manifest["width"] == 128
    for sub in ("FlyingThings3D", "Driving", "Monkaa"):
        for folder in ("frames_cleanpass", "frames_finalpass", "disparity"):
            assert (sample_root / sub / folder).is_dir()
    ft = sample_root / "FlyingThings3D"
    assert sorted(p.name for p in (ft / "frames_cleanpass").iterdir()) == ["TEST", "TRAIN"]
    assert (ft / "frames_cleanpass/TRAIN/A/0000/left/0006.png").is_file()
    assert (ft / "disparity/TRAIN/A/0000/right/0006.pfm").is_file()
    assert (sample_root / "Driving/frames_finalpass/15mm_focallength/scene_forwards/fast/left/0001.png").is_file()
    assert (sample_root / "Monkaa/disparity/synthetic_scene_00/left/0000.pfm").is_file()
    assert not list(sample_root.parent.glob(".*partial"))


@pytest.mark.parametrize("split", ["train", "test"])
def test_photometric_and_left_right_consistency(sample_root, split):
    samples = discover(sample_root, split=split, cache=False)
    checked = 0
    for s in samples:
        left, right, d_left, d_right = _views(s)
        h, w = d_left.shape
        assert np.isfinite(d_left).all() and (d_left > 0).all() and (d_right > 0).all()
        xs = np.arange(w)[None, :] - d_left  # where each left pixel lands in the right view
        inside = xs >= 1
        # The right view at the correspondence shows the same surface or a nearer one, never a farther one.
        x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
        x1 = np.clip(x0 + 1, 0, w - 1)
        rows = np.arange(h)[:, None]
        seen = np.maximum(d_right[rows, x0], d_right[rows, x1])
        # Tolerance 0.3 px: on a slanted plane the neighbouring right pixels are other surface points.
        farther = inside & (seen < d_left - 0.3)
        # Exceptions only where the surface is under a pixel wide (tips of shapes): at a depth edge.
        edge = cv2.dilate(d_left, np.ones((3, 3))) - cv2.erode(d_left, np.ones((3, 3))) > 1.0
        assert not (farther & ~edge).any()
        assert farther.sum() <= 0.005 * inside.sum()
        # Non-occluded: both neighbours see the same surface; compare colours there.
        same = inside & (np.abs(d_right[rows, x0] - d_left) < 0.3) & (np.abs(d_right[rows, x1] - d_left) < 0.3)
        same = cv2.erode(same.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert same.mean() > 0.4
        warped = cv2.remap(right, xs.astype(np.float32), np.repeat(rows, w, 1).astype(np.float32), cv2.INTER_LINEAR)
        err = np.abs(warped - left).max(axis=2)[same]
        assert np.median(err) < 0.01, np.median(err)
        assert np.percentile(err, 99) < 0.06, np.percentile(err, 99)
        checked += 1
    assert checked == len(samples) > 0


def test_occlusions_exist_and_disparity_ranges_vary():
    maxima = []
    for i in range(4):
        pair = render_pair(np.random.default_rng(i), 120, 240, 40.0, 6)
        d = pair["disp_left"]
        maxima.append(d.max())
        assert d.max() <= 40.0 + 1e-3
        assert np.unique(np.round(d)).size > 3  # several depths
        assert not np.allclose(pair["final_left"], pair["left"])  # final pass is blurred
    assert max(maxima) - min(maxima) > 5


def test_deterministic_from_seed(tmp_path):
    kw = dict(height=40, width=80, train_pairs=4, test_pairs=1, progress=False)
    generate_sceneflow_sample(tmp_path / "a", seed=3, **kw)
    generate_sceneflow_sample(tmp_path / "b", seed=3, **kw)
    generate_sceneflow_sample(tmp_path / "c", seed=4, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 5 * 6 + 1  # per pair: 2 views x (clean, final, pfm); plus sample.json
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    rel = next(f for f in files if f.suffix == ".pfm")
    assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()


def test_existing_folder_reused_or_refused(tmp_path):
    kw = dict(height=40, width=80, train_pairs=1, test_pairs=1, progress=False)
    generate_sceneflow_sample(tmp_path / "s", seed=1, **kw)
    stamp = (tmp_path / "s" / "sample.json").stat().st_mtime_ns
    generate_sceneflow_sample(tmp_path / "s", seed=1, **kw)  # same manifest: reused as is
    assert (tmp_path / "s" / "sample.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="not an identical generated sample"):
        generate_sceneflow_sample(tmp_path / "s", seed=2, **kw)
