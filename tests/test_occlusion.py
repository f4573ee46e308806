"""Non-occluded pixels from two ground-truth disparity maps, and ``data.region=nonocc|edges`` on Scene Flow."""

import csv
import shutil

import numpy as np
import pytest

from stereo.config import load_config
from stereo.data.occlusion import nonoccluded
from stereo.data.pfm import read_pfm
from stereo.data.sceneflow import SceneFlowError, discover
from stereo.errors import DatasetError
from stereo.evaluate import evaluate


def _scene(width=48, height=3, bg=4.0, fg=10.0, fg_cols=(20, 30)):
    """A fronto-parallel background at ``bg`` px and a box at ``fg`` px over ``fg_cols`` of the left view,
    with the right view's disparity of the same scene."""
    left = np.full((height, width), bg, np.float32)
    left[:, fg_cols[0] : fg_cols[1]] = fg
    right = np.full((height, width), bg, np.float32)
    right[:, int(fg_cols[0] - fg) : int(fg_cols[1] - fg)] = fg  # the box, seen from the right camera
    return left, right


def test_the_background_behind_a_box_and_beyond_the_frame_is_occluded():
    left, right = _scene()
    expected = np.ones(left.shape[1], bool)
    expected[:4] = False  # x - 4 < 0: outside the right image
    # Background pixels whose match x - 4 lands on the box in the right view (columns 10..19): x in 14..19
    # (20..23 are the box itself in the left view, visible).
    expected[14:20] = False
    got = nonoccluded(left, right)
    assert (got == expected[None, :]).all()


def test_sub_pixel_matches_unknown_values_and_tolerance():
    left, right = _scene(bg=4.5)  # matches fall between two right pixels; either may confirm
    got = nonoccluded(left, right)[0]
    assert got[5] and not got[4]  # 5 - 4.5 = 0.5 is inside, 4 - 4.5 is not
    assert got[14] and not got[15]  # 14 - 4.5 = 9.5 sits beside the box's first column (10): visible
    left[0, 30] = np.nan
    right[1, 25:27] = np.inf  # both pixels around the match 30 - 4.5 unknown
    right[2, 25] = np.inf  # one of them: the other still confirms
    got = nonoccluded(left, right)
    assert not got[0, 30] and not got[1, 30] and got[2, 30]
    left, right = _scene()
    assert not nonoccluded(left, right + 0.6, tolerance=0.5).any()
    assert nonoccluded(left, right + 0.6, tolerance=1.0)[:, 30:].all()
    with pytest.raises(ValueError, match="one size"):
        nonoccluded(left, right[:, :-1])


def _eval(root, tmp_path, checkpoint, *over):
    cfg = load_config("eval", [f"checkpoint={checkpoint}", f"data.root={root}", "data.render_pass=clean", "device=cpu",
                               "max_disp=32", "per_image_csv=true", *over])  # fmt: skip
    out = tmp_path / f"eval{len(list(tmp_path.iterdir()))}"
    return evaluate(cfg, out, show_progress=False, tensorboard=False), out


def test_sceneflow_nonocc_evaluates_only_pixels_the_right_view_confirms(sample_root, checkpoint, tmp_path):
    all_px, _ = _eval(sample_root, tmp_path, checkpoint)
    nonocc, out = _eval(sample_root, tmp_path, checkpoint, "data.region=nonocc")
    assert nonocc.region == "nonocc" and all_px.region == "all" and nonocc.pairs == all_px.pairs == 4
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    for s, row in zip(discover(sample_root, "test", "clean"), rows, strict=True):
        assert row["left"] == str(s.left)
        gl = read_pfm(s.disparity)
        gr = read_pfm(s.disparity.parent.parent / "right" / s.disparity.name)
        in_range = (gl > 0) & (gl < 32)
        region = nonoccluded(gl, gr) & in_range
        assert int(row["pixels"]) == region.sum()
        assert 0 < region.sum() < in_range.sum()  # generated scenes have occlusions


def test_sceneflow_occluded_evaluates_exactly_the_pixels_nonocc_leaves_out(sample_root, checkpoint, tmp_path):
    occluded, out = _eval(sample_root, tmp_path, checkpoint, "data.region=occluded")
    assert occluded.region == "occluded" and occluded.pairs == 4
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    for s, row in zip(discover(sample_root, "test", "clean"), rows, strict=True):
        gl = read_pfm(s.disparity)
        gr = read_pfm(s.disparity.parent.parent / "right" / s.disparity.name)
        in_range = (gl > 0) & (gl < 32)
        hidden = ~nonoccluded(gl, gr) & in_range
        assert int(row["pixels"]) == hidden.sum() > 0


def _near_edges(gt: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` (square window) of a pair of 4-neighbours more than 1 px apart: numpy shifts."""
    edge = np.zeros(gt.shape, bool)
    with np.errstate(invalid="ignore"):
        dx, dy = np.abs(np.diff(gt, axis=1)) > 1, np.abs(np.diff(gt, axis=0)) > 1
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    out = np.zeros_like(edge)
    for y, x in zip(*np.nonzero(edge), strict=True):
        out[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1] = True
    return out


def test_sceneflow_edges_evaluates_only_pixels_near_depth_edges(sample_root, checkpoint, tmp_path):
    all_px, _ = _eval(sample_root, tmp_path, checkpoint)
    for radius in (2, 0):
        edges, out = _eval(sample_root, tmp_path, checkpoint, "data.region=edges", f"data.edge_radius={radius}")
        assert edges.region == "edges" and edges.pairs == all_px.pairs == 4
        with open(out / "per_image.csv") as f:
            rows = list(csv.DictReader(f))
        for s, row in zip(discover(sample_root, "test", "clean"), rows, strict=True):
            gt = read_pfm(s.disparity)
            in_range = (gt > 0) & (gt < 32)
            region = _near_edges(gt, radius) & in_range
            assert int(row["pixels"]) == region.sum()
            assert 0 < region.sum() < in_range.sum()


def test_sceneflow_nonocc_names_a_missing_right_disparity_and_folder_refuses(sample_root, checkpoint, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(sample_root, root)
    gone = next(iter(sorted((root / "FlyingThings3D/disparity/TEST").rglob("right/*.pfm"))))
    gone.unlink()
    for region in ("nonocc", "occluded"):
        with pytest.raises(SceneFlowError, match=rf"data.region={region} needs .*missing {gone}"):
            _eval(root, tmp_path, checkpoint, f"data.region={region}")
    _eval(root, tmp_path, checkpoint)  # every pixel: the right view's disparity is not needed
    for region in ("nonocc", "occluded"):
        with pytest.raises(DatasetError, match=f"data=folder has no occlusion masks: data.region={region}"):
            _eval(root, tmp_path, checkpoint, "data=folder", f"data.region={region}")
