"""Raw calibrations and rectification: a simulated rig (known K, distortion, R, T) sees a textured plane;
its raw views, rectified by stereo-infer from the OpenCV file, align to a quarter pixel and give the plane's
depth within 1%. The calibration readers (OpenCV, ROS, Kalibr) refuse bad files in one line."""

import json

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from stereo.config import InferAppConfig, check_config, load_config
from stereo.data.images import read_rgb
from stereo.data.pfm import read_pfm
from stereo.errors import ConfigError, DataError
from stereo.infer import infer
from stereo.matches import match_points
from stereo.rectification import read_raw_calibration, rectification
from tests.conftest import REPO

W, H = 480, 272
K1 = np.array([[510.0, 0, 236.0], [0, 508.0, 139.0], [0, 0, 1]])
K2 = np.array([[505.0, 0, 243.0], [0, 504.0, 133.0], [0, 0, 1]])
D1, D2 = np.array([-0.08, 0.015, 0.0005, -0.0008, 0.0]), np.array([-0.06, 0.01, -0.0006, 0.0004, 0.0])
R = cv2.Rodrigues(np.array([0.006, -0.012, 0.004]))[0]
T = np.array([-0.12, 0.0015, 0.001])  # metres: the right camera 12 cm to the right
PLANE_Z = 1.5  # metres, fronto-parallel to the rectified cameras


def _write_opencv(path, **mats):
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for k, v in mats.items():
        fs.write(k, v)
    fs.release()
    return path


def _raw_views():
    """The raw views of a textured plane at PLANE_Z: rectified views made first (the plane's disparity is
    constant there), then every raw pixel looks up where it lands once undistorted and rectified."""
    R1, R2, P1, P2, *_ = cv2.stereoRectify(K1, D1, K2, D2, (W, H), R, T.reshape(3, 1),
                                           flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)  # fmt: skip
    f, baseline = P1[0, 0], -P2[0, 3] / P2[0, 0]
    d = f * baseline / PLANE_Z
    texture = read_rgb(REPO / "stereo" / "examples" / "flying2_left.png")
    big = cv2.resize(texture, (2 * W, 2 * H), interpolation=cv2.INTER_CUBIC)  # room for the warps
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    grid = np.stack([xs.ravel(), ys.ravel()], 1).reshape(-1, 1, 2)
    views = []
    for K, D, Rr, P, shift in ((K1, D1, R1, P1, 0.0), (K2, D2, R2, P2, d)):
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-9)
        rect = cv2.undistortPoints(grid, K, D, R=Rr, P=P, criteria=criteria)
        rx, ry = rect.reshape(H, W, 2).transpose(2, 0, 1)
        # the rectified left view shows the texture at x; the right one at x + d (x_right = x_left - d)
        mx, my = ((rx + shift) + W / 2).astype(np.float32), (ry + H / 2).astype(np.float32)
        views.append(np.clip(cv2.remap(big, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT), 0, 1))
    return views[0], views[1], d


def _save(path, rgb):
    Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def test_a_simulated_rig_rectifies_to_a_quarter_pixel_and_gives_the_planes_depth(tmp_path):
    left, right, d = _raw_views()
    raw_dy = np.subtract(*match_points(right, left))[:, 1]
    assert np.median(np.abs(raw_dy)) > 1.0  # the raw views are not rectified
    calib = _write_opencv(tmp_path / "stereo.yaml", K1=K1, D1=D1, K2=K2, D2=D2, R=R, T=T, image_width=W,
                          image_height=H)  # fmt: skip
    lp, rp = _save(tmp_path / "left.png", left), _save(tmp_path / "right.png", right)
    out = tmp_path / "out"
    [r] = infer(load_config("infer", [f"left={lp}", f"right={rp}", f"calib={calib}", "save_rectified=true",
                                      "device=cpu"]), out)  # fmt: skip
    assert r.rectified["rectify"] == "calib"
    lr, rr = read_rgb(out / "left_left_rect.png"), read_rgb(out / "left_right_rect.png")
    pl, pr = match_points(lr, rr)
    assert len(pl) > 50 and np.median(np.abs(pr[:, 1] - pl[:, 1])) < 0.25
    depth = read_pfm(out / "left_depth.pfm")
    inner = depth[40:-40, 60:-60]  # away from the borders the warps fill in
    assert abs(np.median(inner) / PLANE_Z - 1) < 0.01, (np.median(inner), d)
    rect = json.loads((out / "rectification.json").read_text())["rectifications"][0]
    assert rect["size"] == [W, H] and np.asarray(rect["Q"]).shape == (4, 4) and np.asarray(rect["P2"]).shape == (3, 4)


def test_the_three_file_kinds_read_the_same_rig(tmp_path):
    opencv = read_raw_calibration(str(_write_opencv(tmp_path / "c.xml", M1=K1, D1=D1, M2=K2, D2=D2, R=R, T=T)))
    assert np.allclose(opencv.K1, K1) and np.allclose(opencv.T, T) and opencv.size is None
    json_file = read_raw_calibration(str(_write_opencv(tmp_path / "c.json", K1=K1, D1=D1, K2=K2, D2=D2, R=R, T=T)))
    assert np.allclose(json_file.R, R)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R, T
    chain = {f"cam{i}": {"camera_model": "pinhole", "intrinsics": [K[0][0], K[1][1], K[0][2], K[1][2]],
                         "distortion_model": "radtan", "distortion_coeffs": D[:4].tolist(), "resolution": [W, H]}
             for i, (K, D) in enumerate(((K1.tolist(), D1), (K2.tolist(), D2)))}  # fmt: skip
    chain["cam1"]["T_cn_cnm1"] = pose.tolist()
    (tmp_path / "camchain.yaml").write_text(yaml.safe_dump(chain))
    kalibr = read_raw_calibration(str(tmp_path / "camchain.yaml"))
    assert np.allclose(kalibr.R, R) and np.allclose(kalibr.T, T) and kalibr.size == (W, H)
    # ROS camera_info: raw K/D plus the rectification R and projection P, used as they are
    R1, R2, P1, P2, *_ = cv2.stereoRectify(K1, D1, K2, D2, (W, H), R, T.reshape(3, 1), flags=cv2.CALIB_ZERO_DISPARITY)
    for name, K, D, Rr, P in (("l", K1, D1, R1, P1), ("r", K2, D2, R2, P2)):
        info = {"image_width": W, "image_height": H, "distortion_model": "plumb_bob",
                "camera_matrix": {"rows": 3, "cols": 3, "data": K.ravel().tolist()},
                "distortion_coefficients": {"rows": 1, "cols": 5, "data": D.tolist()},
                "rectification_matrix": {"rows": 3, "cols": 3, "data": Rr.ravel().tolist()},
                "projection_matrix": {"rows": 3, "cols": 4, "data": P.ravel().tolist()}}  # fmt: skip
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(info))
    ros = read_raw_calibration(f"{tmp_path / 'l.yaml'},{tmp_path / 'r.yaml'}")
    assert np.allclose(ros.R, R, atol=1e-9) and np.allclose(ros.T / np.linalg.norm(ros.T), T / np.linalg.norm(T))
    rect = rectification(ros, (W, H))
    assert np.allclose(rect.P1, P1) and rect.calibration().baseline == pytest.approx(np.linalg.norm(T), rel=1e-6)


@pytest.mark.parametrize(
    ("mats", "message"),
    [({"K1": K1, "D1": D1, "K2": K2, "D2": D2, "R": R}, r"no T \(expected K1, D1, K2, D2, R, T"),
     ({"K1": K1[:2], "D1": D1, "K2": K2, "D2": D2, "R": R, "T": T}, "K1 must be 3x3"),
     ({"K1": K1, "D1": D1[:3], "K2": K2, "D2": D2, "R": R, "T": T}, "D1 has 3 distortion coefficients"),
     ({"K1": K1, "D1": D1, "K2": K2 * np.nan, "D2": D2, "R": R, "T": T}, "K2 holds a non-finite value")],
)  # fmt: skip
def test_bad_calibration_files_name_the_file_and_the_key(tmp_path, mats, message):
    path = _write_opencv(tmp_path / "bad.yaml", **mats)
    with pytest.raises(DataError, match=rf"bad.yaml: {message}"):
        read_raw_calibration(str(path))


def test_a_calibration_of_another_size_and_keys_that_refuse_each_other(tmp_path):
    path = _write_opencv(tmp_path / "c.yaml", K1=K1, D1=D1, K2=K2, D2=D2, R=R, T=T, image_width=640, image_height=480)
    with pytest.raises(DataError, match=r"c.yaml: calibrated at 640x480, the images are 480x272"):
        rectification(read_raw_calibration(str(path)), (W, H))
    (tmp_path / "one.yaml").write_text(yaml.safe_dump({"image_width": W, "camera_matrix": {"data": [1] * 9}}))
    with pytest.raises(ConfigError, match="describes one camera; give both"):
        read_raw_calibration(str(tmp_path / "one.yaml"))
    refused = ((["rectify=calib"], "rectify=calib needs calib="),
               (["rectify=matches", "focal_px=500", "baseline=0.1"], "rectify=matches rectifies without"))  # fmt: skip
    for args, message in refused:
        with pytest.raises(ConfigError, match=message):
            check_config(load_config("infer", ["left=a.png", "right=b.png", *args]), InferAppConfig)


def test_rectify_from_matches_aligns_the_rows_of_an_uncalibrated_pair(tmp_path):
    left, right, _ = _raw_views()
    lp, rp = _save(tmp_path / "left.png", left), _save(tmp_path / "right.png", right)
    [r] = infer(load_config("infer", [f"left={lp}", f"right={rp}", "rectify=matches", "save_rectified=true",
                                      "device=cpu"]), tmp_path / "out")  # fmt: skip
    assert r.rectified["rectify"] == "matches" and np.asarray(r.rectified["H1"]).shape == (3, 3)
    pl, pr = match_points(read_rgb(tmp_path / "out" / "left_left_rect.png"),
                          read_rgb(tmp_path / "out" / "left_right_rect.png"))  # fmt: skip
    assert np.median(np.abs(pr[:, 1] - pl[:, 1])) < 0.5


def test_the_api_rectifies_with_a_calibration_and_says_how(tmp_path):
    from stereo.api import load_model

    left, right, _ = _raw_views()
    calib = _write_opencv(tmp_path / "stereo.yaml", K1=K1, D1=D1, K2=K2, D2=D2, R=R, T=T)
    pred = load_model(device="cpu").predict(left, right, calibration=str(calib))
    depth = pred.depth(pred.rectification.calibration())
    assert abs(np.median(depth[40:-40, 60:-60]) / PLANE_Z - 1) < 0.01
    assert pred.image.shape == left.shape and not np.array_equal(pred.image, left)  # the rectified left view
