import logging
import shutil

import cv2
import pytest

from stereo.data import sceneflow
from stereo.data.sceneflow import SceneFlowError, discover


def test_splits_and_subsets(sample_root):
    train = discover(sample_root, "train", cache=False)
    test = discover(sample_root, "test", cache=False)
    assert [s.subset for s in train].count("flyingthings3d") == 6
    assert [s.subset for s in train].count("driving") == 3
    assert [s.subset for s in train].count("monkaa") == 3
    assert len(test) == 4 and {s.subset for s in test} == {"flyingthings3d"}
    assert all("/TEST/" in str(s.left) for s in test)
    assert not any("/TEST/" in str(s.left) for s in train)
    assert [str(s.left) for s in train] == sorted(str(s.left) for s in train)
    for s in train + test:
        assert s.left.is_file() and s.right.is_file() and s.disparity.is_file()
        assert s.right == s.left.parent.parent / "right" / s.left.name
        assert s.disparity.parent.name == "left" and s.disparity.suffix == ".pfm"
    only = discover(sample_root, "train", subsets=["monkaa"], cache=False)
    assert {s.subset for s in only} == {"monkaa"} and len(only) == 3
    final = discover(sample_root, "train", render_pass="final", cache=False)
    assert all("frames_finalpass" in str(s.left) for s in final) and len(final) == 12


def _flat_copy(sample_root, dst):
    """PSMNet's renaming (layout b) of the generated sample."""
    names = {
        "FlyingThings3D": ("frames", "frames_disparity"),
        "Driving": ("driving_frames", "driving_disparity"),
        "Monkaa": ("monkaa_frames", "monkaa_disparity"),
    }
    for sub, (prefix, disp) in names.items():
        for p in ("clean", "final"):
            shutil.copytree(sample_root / sub / f"frames_{p}pass", dst / f"{prefix}_{p}pass")
        shutil.copytree(sample_root / sub / "disparity", dst / disp)


def test_flat_layout_and_case_insensitive_subsets(sample_root, tmp_path):
    _flat_copy(sample_root, tmp_path / "flat")
    a = discover(sample_root, "train", cache=False)
    b = discover(tmp_path / "flat", "train", cache=False)
    assert [(s.subset, s.left.name) for s in a] == [(s.subset, s.left.name) for s in b]
    assert len(discover(tmp_path / "flat", "test", cache=False)) == 4
    lower = tmp_path / "lower"
    shutil.copytree(sample_root / "Monkaa", lower / "monkaa")
    assert len(discover(lower, "train", subsets=["monkaa"], cache=False)) == 3


def test_webp_images_and_non_images_ignored(sample_root, tmp_path):
    root = tmp_path / "webp"
    shutil.copytree(sample_root / "Monkaa", root / "Monkaa")
    for png in (root / "Monkaa/frames_cleanpass").rglob("*.png"):
        cv2.imwrite(str(png.with_suffix(".webp")), cv2.imread(str(png)), [cv2.IMWRITE_WEBP_QUALITY, 101])
        png.unlink()
    (root / "Monkaa/frames_cleanpass/synthetic_scene_00/left/notes.txt").write_text("hello")
    samples = discover(root, "train", subsets=["monkaa"], cache=False)
    assert len(samples) == 3 and all(s.left.suffix == ".webp" for s in samples)


def test_missing_right_and_disparity_listed(sample_root, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(sample_root / "Monkaa", root / "Monkaa")
    right = root / "Monkaa/frames_cleanpass/synthetic_scene_00/right/0001.png"
    disp = root / "Monkaa/disparity/synthetic_scene_00/left/0002.pfm"
    right.unlink()
    disp.unlink()
    with pytest.raises(SceneFlowError, match="2 left image") as err:
        discover(root, "train", subsets=["monkaa"], cache=False)
    assert str(right) in str(err.value) and str(disp) in str(err.value)
    assert "skip_missing" in str(err.value)


def test_skip_missing_warns_with_count(sample_root, tmp_path, caplog):
    root = tmp_path / "broken"
    shutil.copytree(sample_root / "Monkaa", root / "Monkaa")
    (root / "Monkaa/frames_cleanpass/synthetic_scene_00/right/0001.png").unlink()
    with caplog.at_level(logging.WARNING):
        samples = discover(root, "train", subsets=["monkaa"], skip_missing=True, cache=False)
    assert len(samples) == 2
    assert "skipped 1 incomplete pair" in caplog.text


def test_bad_roots(tmp_path):
    with pytest.raises(SceneFlowError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneFlowError, match=r"not a Scene Flow root.*FlyingThings3D/.*found: nothing"):
        discover(tmp_path / "empty")
    (tmp_path / "wrong" / "images").mkdir(parents=True)
    with pytest.raises(SceneFlowError, match="found: images"):
        discover(tmp_path / "wrong")
    (tmp_path / "nodisp" / "Monkaa" / "frames_cleanpass").mkdir(parents=True)
    with pytest.raises(SceneFlowError, match="disparity folder .*Monkaa/disparity"):
        discover(tmp_path / "nodisp", subsets=["monkaa"])
    (tmp_path / "nodisp" / "Monkaa" / "disparity").mkdir()
    with pytest.raises(SceneFlowError, match="no cleanpass stereo pairs"):
        discover(tmp_path / "nodisp", subsets=["monkaa"])


def test_cache_is_written_reused_and_refreshed(sample_root, tmp_path, monkeypatch):
    root = tmp_path / "c"
    shutil.copytree(sample_root / "Monkaa", root / "Monkaa")
    first = discover(root, "train", subsets=["monkaa"])
    files = list((root / ".stereo_cache").glob("*.txt"))
    assert len(files) == 1
    lines = files[0].read_text().splitlines()[1:]
    assert len(lines) == 3 and lines[0].split("\t")[1].startswith("Monkaa/frames_cleanpass/")
    calls = []
    real_walk = sceneflow._walk
    monkeypatch.setattr(sceneflow, "_walk", lambda top: calls.append(top) or real_walk(top))
    assert discover(root, "train", subsets=["monkaa"]) == first
    assert calls == []  # served from the cache
    # A new sequence changes the folder's fingerprint: the tree is walked again.
    for kind in ("frames_cleanpass", "disparity"):
        shutil.copytree(root / "Monkaa" / kind / "synthetic_scene_00", root / "Monkaa" / kind / "synthetic_scene_01")
    assert len(discover(root, "train", subsets=["monkaa"])) == 6
    assert calls


def test_argument_errors(sample_root):
    with pytest.raises(ValueError, match="split"):
        discover(sample_root, "val")
    with pytest.raises(ValueError, match="render_pass"):
        discover(sample_root, render_pass="albedo")
    with pytest.raises(ValueError, match="unknown subsets"):
        discover(sample_root, subsets=["kitti"])
