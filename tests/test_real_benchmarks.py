"""Middlebury, ETH3D and KITTI layouts built from generated pairs; metrics against an independent
computation; calibration files; depth and point clouds read back and reprojected."""

import shutil

import cv2
import numpy as np
import pytest
import torch

from stereo.calib import read_calib, read_ply
from stereo.checkpoint import load_network
from stereo.config import load_config
from stereo.data.pfm import read_pfm, write_pfm
from stereo.data.sceneflow import discover
from stereo.errors import DataError, DatasetError
from stereo.evaluate import evaluate
from stereo.infer import infer
from stereo.models import run


def _disparity(model, left, right):
    """The (B, H, W) disparity of ``run`` for (B, 3, H, W) images of any size."""
    return run(model, left, right).disparity


CALIB = (
    "cam0=[100 0 60.5; 0 100 30.5; 0 0 1]\ncam1=[100 0 63.5; 0 100 30.5; 0 0 1]\n"
    "doffs=3\nbaseline=0.5\nwidth=128\nheight=64\nndisp=32\n"
)


def _pairs(sample_root, n=3):
    return discover(sample_root, "test", "clean")[:n]


def _middlebury(sample_root, root, gt_name="disp0.pfm", gray=False, mask=True):
    for i, s in enumerate(_pairs(sample_root)):
        scene = root / f"Scene{i}-perfect"
        scene.mkdir(parents=True)
        for src, dst in ((s.left, "im0.png"), (s.right, "im1.png")):
            img = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
            cv2.imwrite(str(scene / dst), img)
        gt = read_pfm(s.disparity).copy()
        gt[:4, :10] = np.inf  # unknown
        write_pfm(scene / gt_name, gt)
        if mask:
            m = np.full(gt.shape, 255, np.uint8)
            m[:, -20:] = 128  # "occluded"
            cv2.imwrite(str(scene / "mask0nocc.png"), m)
        (scene / "calib.txt").write_text(CALIB)
    return root


def _reference(checkpoint, sample, metric, region=None, max_disp=32):
    """Predict, then compute the metric with numpy over finite 0 < gt < max_disp (and the region)."""
    model, _ = load_network(checkpoint, torch.device("cpu"))
    left = cv2.imread(str(sample.left), cv2.IMREAD_COLOR)[..., ::-1] / 255.0
    right = cv2.imread(str(sample.right), cv2.IMREAD_COLOR)[..., ::-1] / 255.0
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), np.float32))  # noqa: E731
    pred = _disparity(model, to(left)[None], to(right)[None])[0].numpy()
    if sample.disparity.suffix == ".png":
        raw = cv2.imread(str(sample.disparity), cv2.IMREAD_UNCHANGED).astype(np.float64)
        gt = np.where(raw > 0, raw / 256, np.nan)
    else:
        gt = read_pfm(sample.disparity)
    valid = np.isfinite(gt) & (np.nan_to_num(gt) > 0) & (np.nan_to_num(gt) < max_disp)
    if region is not None:
        valid &= region
    err = np.abs(pred - gt)[valid]
    return {"bad1": (err > 1).mean() * 100, "bad2": (err > 2).mean() * 100, "epe": err.mean(),
            "d1": ((err > 3) & (err > 0.05 * gt[valid])).mean() * 100}[metric]  # fmt: skip


def _eval(checkpoint, root, name, *over):
    cfg = load_config("eval", [f"checkpoint={checkpoint}", f"data.name={name}", f"data.root={root}", "device=cpu",
                               *over])  # fmt: skip
    return evaluate(cfg, root.parent / f"eval_{name}", show_progress=False, tensorboard=False)


def test_middlebury_all_and_nonocc(checkpoint, sample_root, tmp_path):
    root = _middlebury(sample_root, tmp_path / "middlebury")
    r = _eval(checkpoint, root, "middlebury")
    samples = [type("S", (), {"left": p / "im0.png", "right": p / "im1.png", "disparity": p / "disp0.pfm"})
               for p in sorted(root.iterdir())]  # fmt: skip
    assert r.pairs == 3 and r.primary_metric == "bad2"
    assert r.bad2 == pytest.approx(np.mean([_reference(checkpoint, s, "bad2") for s in samples]), rel=1e-5)
    nonocc = _eval(checkpoint, root, "middlebury", "data.region=nonocc")
    region = np.ones((64, 128), bool)
    region[:, -20:] = False
    expected = np.mean([_reference(checkpoint, s, "bad2", region) for s in samples])
    assert nonocc.bad2 == pytest.approx(expected, rel=1e-5) and nonocc.region == "nonocc"
    occluded = _eval(checkpoint, root, "middlebury", "data.region=occluded")  # mask0nocc 128: the last 20 columns
    expected = np.mean([_reference(checkpoint, s, "bad2", ~region) for s in samples])
    assert occluded.bad2 == pytest.approx(expected, rel=1e-5) and occluded.region == "occluded"


def test_eth3d_grayscale(checkpoint, sample_root, tmp_path):
    root = _middlebury(sample_root, tmp_path / "eth3d", gt_name="disp0GT.pfm", gray=True)
    r = _eval(checkpoint, root, "eth3d", "data.region=nonocc")
    assert r.pairs == 3 and r.primary_metric == "bad1" and 0 <= r.bad1 <= 100


@pytest.mark.parametrize("layout", ["2015", "2012"])
def test_kitti_layouts_and_d1(checkpoint, sample_root, tmp_path, layout):
    names = ("image_2", "image_3", "disp_occ_0", "disp_noc_0") if layout == "2015" else (
        "colored_0", "colored_1", "disp_occ", "disp_noc")  # fmt: skip
    base = tmp_path / "kitti" / "training"
    for d in names:
        (base / d).mkdir(parents=True)
    for i, s in enumerate(_pairs(sample_root)):
        name = f"{i:06d}_10.png"
        shutil.copy(s.left, base / names[0] / name)
        shutil.copy(s.right, base / names[1] / name)
        gt = read_pfm(s.disparity)
        png = np.round(gt * 256).astype(np.uint16)
        png[::3, :] = 0  # sparse, as LiDAR ground truth
        cv2.imwrite(str(base / names[2] / name), png)
        png[:, :30] = 0
        cv2.imwrite(str(base / names[3] / name), png)
    r = _eval(checkpoint, tmp_path / "kitti", "kitti")
    samples = [type("S", (), {"left": base / names[0] / f"{i:06d}_10.png", "right": base / names[1] / f"{i:06d}_10.png",
                              "disparity": base / names[2] / f"{i:06d}_10.png"}) for i in range(3)]  # fmt: skip
    assert r.primary_metric == "d1" and r.pairs == 3
    assert r.d1 == pytest.approx(np.mean([_reference(checkpoint, s, "d1") for s in samples]), rel=1e-5, abs=1e-9)
    noc = _eval(checkpoint, tmp_path / "kitti", "kitti", "data.region=nonocc")
    assert noc.pairs == 3
    # occluded: the pixels of disp_occ that disp_noc leaves out (its first 30 columns)
    occ = _eval(checkpoint, tmp_path / "kitti", "kitti", "data.region=occluded")
    hidden = np.zeros(read_pfm(_pairs(sample_root)[0].disparity).shape, bool)
    hidden[:, :30] = True
    assert occ.d1 == pytest.approx(np.mean([_reference(checkpoint, s, "d1", hidden) for s in samples]), rel=1e-5,
                                   abs=1e-9)  # fmt: skip
    shutil.rmtree(base / names[3])
    with pytest.raises(DatasetError, match=rf"KITTI ground truth folder .*{names[3]} does not exist"):
        _eval(checkpoint, tmp_path / "kitti", "kitti", "data.region=occluded")
    with pytest.raises(DatasetError, match="KITTI's ground truth is sparse.*data.region=edges needs dense"):
        _eval(checkpoint, tmp_path / "kitti", "kitti", "data.region=edges")


def test_bad_real_inputs_are_named(sample_root, tmp_path, checkpoint):
    root = _middlebury(sample_root, tmp_path / "m")
    (root / "Scene0-perfect/im1.png").unlink()
    with pytest.raises(DatasetError, match=r"Scene0-perfect: has im0.png but no im1.png"):
        _eval(checkpoint, root, "middlebury")
    (tmp_path / "calib.txt").write_text("width=3\n")
    with pytest.raises(DataError, match=r"calib.txt: missing cam0, baseline"):
        read_calib(tmp_path / "calib.txt")
    kitti = tmp_path / "k/training"
    for d in ("image_2", "image_3", "disp_occ_0"):
        (kitti / d).mkdir(parents=True)
    s = _pairs(sample_root, 1)[0]
    shutil.copy(s.left, kitti / "image_2/000000_10.png")
    shutil.copy(s.right, kitti / "image_3/000000_10.png")
    cv2.imwrite(str(kitti / "disp_occ_0/000000_10.png"), np.full((64, 128), 40, np.uint8))  # 8-bit: wrong
    with pytest.raises(DataError, match=r"000000_10.png: expected a single-channel 16-bit PNG"):
        _eval(checkpoint, tmp_path / "k", "kitti")


def test_calibrations(tmp_path):
    (tmp_path / "calib.txt").write_text(CALIB)
    c = read_calib(tmp_path / "calib.txt")
    assert (c.f, c.cx, c.cy, c.baseline, c.doffs, c.ndisp) == (100, 60.5, 30.5, 0.5, 3, 32)
    p2 = "721.5 0 609.6 44.9 0 721.5 172.9 0.2 0 0 1 0.003"
    p3 = "721.5 0 609.6 -339.5 0 721.5 172.9 2.2 0 0 1 0.003"
    (tmp_path / "000000.txt").write_text(f"P0: 1 0 0 0 0 1 0 0 0 0 1 0\nP2: {p2}\nP3: {p3}\n")
    k = read_calib(tmp_path / "000000.txt")
    assert k.f == 721.5 and k.baseline == pytest.approx((44.9 + 339.5) / 721.5) and k.doffs == 0


def test_point_cloud_reprojects_to_the_disparity(checkpoint, sample_root, tmp_path):
    s = _pairs(sample_root, 1)[0]
    (tmp_path / "calib.txt").write_text(CALIB)
    cfg = load_config("infer", [f"checkpoint={checkpoint}", f"left={s.left}", f"right={s.right}", "device=cpu",
                                f"calib={tmp_path / 'calib.txt'}", "point_cloud=true"])  # fmt: skip
    infer(cfg, tmp_path / "out")
    disp = read_pfm(tmp_path / "out" / f"{s.left.stem}.pfm")
    depth = read_pfm(tmp_path / "out" / f"{s.left.stem}_depth.pfm")
    pts, rgb = read_ply(tmp_path / "out" / f"{s.left.stem}.ply")
    keep = disp > 0
    assert len(pts) == keep.sum() and rgb.dtype == np.uint8
    x = 100 * pts[:, 0] / pts[:, 2] + 60.5  # reproject with the calibration
    y = 100 * pts[:, 1] / pts[:, 2] + 30.5
    d = 0.5 * 100 / pts[:, 2] - 3  # Z = baseline f / (d + doffs)
    xi, yi = np.round(x).astype(int), np.round(y).astype(int)
    np.testing.assert_allclose(x, xi, atol=1e-3)
    np.testing.assert_allclose(d, disp[yi, xi], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(depth[keep], 50 / (disp[keep] + 3), rtol=1e-5)
    header = (tmp_path / "out" / f"{s.left.stem}.ply").read_bytes()[:200]
    assert b"format binary_little_endian 1.0" in header and b"property uchar red" in header


def test_fine_tuning_on_a_real_layout(sample_root, tmp_path):
    """The same data groups feed stereo-train: sparse KITTI-style ground truth goes through the valid mask."""
    from stereo.train import train
    from tests.conftest import make_tiny_cfg

    base = tmp_path / "kitti" / "training"
    for d in ("image_2", "image_3", "disp_occ_0"):
        (base / d).mkdir(parents=True)
    for i, s in enumerate(discover(sample_root, "train", "clean")[:4]):
        name = f"{i:06d}_10.png"
        shutil.copy(s.left, base / "image_2" / name)
        shutil.copy(s.right, base / "image_3" / name)
        png = np.round(read_pfm(s.disparity) * 256).astype(np.uint16)
        png[::2] = 0  # half the rows without ground truth
        cv2.imwrite(str(base / "disp_occ_0" / name), png)
    cfg = make_tiny_cfg(tmp_path / "kitti", "data=kitti", "data.crop_size=[32,64]", "val.limit=2", max_steps=2)
    summary = train(cfg, tmp_path / "run")
    # Validation is on the held-out last fifth (1 of 4 frames), never on a training frame.
    assert summary.step == 2 and summary.val.images == 1 and np.isfinite(summary.val.epe)
