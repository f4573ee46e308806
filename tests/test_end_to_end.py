import json

import cv2
import numpy as np
import pytest

from stereo.data.pfm import read_pfm
from stereo.evaluate import evaluate, valid_mask
from stereo.infer import find_pairs, infer
from stereo.train import train
from tests.test_train import tiny_cfg


@pytest.fixture(scope="module")
def checkpoint(sample_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("e2e") / "train"
    train(tiny_cfg(sample_root, max_steps=2, val_every=0), run)
    return run / "checkpoints/last.pt"


def test_evaluate_writes_sane_metrics(checkpoint, sample_root, tmp_path):
    r = evaluate(checkpoint, sample_root, tmp_path, render_pass="clean", limit=3, per_image_csv=True, worst_k=2,
                 device="cpu", progress=False)  # fmt: skip
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["epe"] == pytest.approx(r["epe"])
    for k in ("epe", "bad1", "bad2", "bad3", "d1", "pairs", "checkpoint", "mask", "averaging"):
        assert k in saved
    assert saved["pairs"] == 3 and saved["mask"] == "positive: 0 < gt < 32"
    assert 0 < saved["epe"] < 32 and 0 <= saved["d1"] <= saved["bad3"] <= saved["bad2"] <= saved["bad1"] <= 100
    assert len((tmp_path / "per_image.csv").read_text().splitlines()) == 4
    assert len(list((tmp_path / "worst").glob("*.png"))) == 2
    pixel = evaluate(checkpoint, sample_root, tmp_path / "p", render_pass="clean", limit=3, averaging="pixel",
                     device="cpu", progress=False, tensorboard=False)  # fmt: skip
    assert pixel["epe"] == pytest.approx(r["epe"], rel=0.5) and pixel["averaging"] == "over all valid pixels"


def test_masks():
    gt = np.array([[-3.0, 0.0, 5.0, 191.0, 192.0, np.nan, np.inf]], np.float32)
    assert valid_mask(gt, "positive", 192).tolist() == [[False, False, True, True, False, False, False]]
    assert valid_mask(gt, "absolute", 192).tolist() == [[True, True, True, True, False, False, False]]
    assert valid_mask(gt, "below", 192).tolist() == [[True, True, True, True, False, False, False]]
    with pytest.raises(ValueError, match="mask must be one of"):
        valid_mask(gt, "all", 192)


def _pairs_dir(sample_root, tmp_path):
    """Two folders with the same file names in different sub-folders (outputs must not collide)."""
    src = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[:2]
    for i, left in enumerate(src):
        for view in ("left", "right"):
            img = cv2.imread(str(left.parent.parent / view / left.name))
            dst = tmp_path / view / f"seq{i}" / "0001.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dst), img)
    return tmp_path / "left", tmp_path / "right"


def test_infer_outputs(checkpoint, sample_root, tmp_path):
    left, right = _pairs_dir(sample_root, tmp_path)
    results = infer(checkpoint, str(left), str(right), tmp_path / "out", device="cpu", focal_px=100.0, baseline=0.5)
    assert [r["name"] for r in results] == ["seq0/0001", "seq1/0001"]
    for r in results:
        stem = tmp_path / "out" / r["name"]
        disp = read_pfm(f"{stem}.pfm")
        assert disp.shape == (64, 128)
        png = cv2.imread(f"{stem}.png", cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (64, 128)
        assert np.abs(png / 256.0 - disp).max() <= 1 / 256
        colour = cv2.imread(f"{stem}_color.png")
        assert colour.shape == (64, 128, 3)
        depth = read_pfm(f"{stem}_depth.pfm")
        pos = disp > 0
        np.testing.assert_allclose(depth[pos], 100.0 * 0.5 / disp[pos], rtol=1e-5)
        assert np.isinf(depth[~pos]).all()
    globbed = find_pairs(str(left / "*" / "*.png"), str(right / "*" / "*.png"))
    assert [p.name for p in globbed] == ["seq0/0001", "seq1/0001"]
    single = infer(checkpoint, str(left / "seq0/0001.png"), str(right / "seq0/0001.png"), tmp_path / "one",
                   device="cpu", scale=0.5)  # fmt: skip
    assert single[0]["size"] == [64, 128] and read_pfm(tmp_path / "one/0001.pfm").shape == (64, 128)


def test_infer_bad_inputs(checkpoint, tmp_path):
    (tmp_path / "l").mkdir()
    (tmp_path / "r").mkdir()
    cv2.imwrite(str(tmp_path / "l/a.png"), np.zeros((32, 48, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "r/a.png"), np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(ValueError, match=r"differ in size: .*l/a\.png is 48x32.*r/a\.png is 40x32"):
        infer(checkpoint, str(tmp_path / "l/a.png"), str(tmp_path / "r/a.png"), tmp_path / "o", device="cpu")
    with pytest.raises(FileNotFoundError, match=r"matches no image"):
        infer(checkpoint, str(tmp_path / "l/*.jpg"), str(tmp_path / "r/*.jpg"), tmp_path / "o", device="cpu")
    (tmp_path / "r/a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"r/a\.png: cannot decode"):
        infer(checkpoint, str(tmp_path / "l"), str(tmp_path / "r"), tmp_path / "o", device="cpu")
    cv2.imwrite(str(tmp_path / "l/b.png"), np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"1 left image\(s\) have no right image.*l/b\.png"):
        find_pairs(str(tmp_path / "l"), str(tmp_path / "r"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_pairs(str(tmp_path / "nope.png"), str(tmp_path / "r"))
