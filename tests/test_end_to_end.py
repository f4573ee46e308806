import json

import cv2
import numpy as np
import pytest
import torch

from stereo.config import load_config
from stereo.data.pairs import find_pairs
from stereo.data.pfm import read_pfm
from stereo.errors import ConfigError
from stereo.evaluate import evaluate
from stereo.infer import infer as infer_cfg
from stereo.metrics import valid_mask
from stereo.visualize import colorize_disparity


def eval_cfg(checkpoint, root, *overrides):
    return load_config("eval", [f"checkpoint={checkpoint}", f"data.root={root}", "device=cpu", *overrides])


def infer(checkpoint, left, right, out, **kw):
    over = [f"checkpoint={checkpoint}", f"left={left}", f"right={right}", *(f"{k}={v}" for k, v in kw.items())]
    return infer_cfg(load_config("infer", over), out)


def test_evaluate_writes_sane_metrics(checkpoint, sample_root, tmp_path):
    cfg = eval_cfg(checkpoint, sample_root, "data.render_pass=clean", "data.limit=3", "per_image_csv=true", "worst_k=2")
    r = evaluate(cfg, tmp_path, show_progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["epe"] == pytest.approx(r.epe)
    for k in ("epe", "bad1", "bad2", "bad3", "d1", "pairs", "checkpoint", "mask", "averaging"):
        assert k in saved
    assert saved["pairs"] == 3 and saved["mask"] == "positive: 0 < gt < 32"
    assert saved["regression"] == "soft_argmin" and saved["refinement"] is None  # the tiny model has none
    assert 0 < saved["epe"] < 32 and 0 <= saved["d1"] <= saved["bad3"] <= saved["bad2"] <= saved["bad1"] <= 100
    assert saved["bad1"] <= saved["bad05"] and list(saved["bands"]) == ["<=0.5", "0.5-1", "1-2", "2-3", ">3"]
    assert sum(saved["bands"].values()) == pytest.approx(100) and saved["bands"][">3"] == pytest.approx(r.bad3)
    assert len((tmp_path / "per_image.csv").read_text().splitlines()) == 4
    assert len(list((tmp_path / "worst").glob("*.png"))) == 2
    cfg = eval_cfg(checkpoint, sample_root, "data.render_pass=clean", "data.limit=3", "averaging=pixel")
    pixel = evaluate(cfg, tmp_path / "p", show_progress=False, tensorboard=False)
    assert pixel.epe == pytest.approx(r.epe, rel=0.5) and pixel.averaging == "over all valid pixels"


def test_masks():
    gt = torch.tensor([[-3.0, 0.0, 5.0, 191.0, 192.0, np.nan, np.inf]])
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
    assert [r.name for r in results] == ["seq0/0001", "seq1/0001"]
    for r in results:
        stem = tmp_path / "out" / r.name
        disp = read_pfm(f"{stem}.pfm")
        assert disp.shape == (64, 128)
        png = cv2.imread(f"{stem}.png", cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (64, 128)
        assert np.abs(png / 256.0 - disp).max() <= 1 / 256
        colour = cv2.imread(f"{stem}_color.png")
        assert colour.shape == (64, 128, 3)
        # The legend spans the colour image's scale: 0 .. the disparity's maximum (color_range=image).
        assert r.color_range_px == [0.0, pytest.approx(float(disp.max()), rel=1e-6)]
        legend = cv2.imread(f"{stem}_legend.png")
        assert legend.shape[1] >= 128 and legend.shape[0] == 44
        ends = colorize_disparity(np.array([[0.0, 1.0]]), 0, 1)[0, :, ::-1]  # magma's ends, BGR
        np.testing.assert_allclose(legend[2, [0, -1]].astype(int), ends.astype(int), atol=12)
        depth = read_pfm(f"{stem}_depth.pfm")
        pos = disp > 0
        np.testing.assert_allclose(depth[pos], 100.0 * 0.5 / disp[pos], rtol=1e-5)
        assert np.isinf(depth[~pos]).all()
    globbed = find_pairs(str(left / "*" / "*.png"), str(right / "*" / "*.png"))
    assert [p.name for p in globbed] == ["seq0/0001", "seq1/0001"]
    one = (left / "seq0/0001.png", right / "seq0/0001.png", tmp_path / "one")
    single = infer(checkpoint, *one, device="cpu", scale=0.5)
    assert single[0].size == [64, 128] and read_pfm(tmp_path / "one/0001.pfm").shape == (64, 128)


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


def test_infer_adapt_is_refused_where_it_cannot_run_before_any_output(checkpoint, tmp_path):
    (tmp_path / "l").mkdir()
    (tmp_path / "r").mkdir()
    img = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "l/a.png"), img)
    cv2.imwrite(str(tmp_path / "r/a.png"), img)
    with pytest.raises(ConfigError, match="adapt=true adapts a network's sub-pixel refinement.*refine=none"):
        infer(checkpoint, str(tmp_path / "l"), str(tmp_path / "r"), tmp_path / "o", device="cpu", adapt="true")
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="adapt=true: not available with backend=onnxruntime"):
        infer("null", str(tmp_path / "l"), str(tmp_path / "r"), tmp_path / "o", device="cpu", adapt="true",
              backend="onnxruntime", onnx=str(tmp_path / "m.onnx"))  # fmt: skip
