"""What a pair's feature matches tell before the network runs: the rectification check flags misaligned
and swapped views and stays silent on rectified ones; disparity_offset=auto and scale=auto bring a pair's
disparities into the network's range."""

import json
import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from stereo.config import load_config
from stereo.data.images import read_rgb
from stereo.data.pfm import read_pfm
from stereo.errors import DataError
from stereo.infer import infer
from stereo.matches import (
    MAX_OFFSET_PX,
    SCALE_MARGIN,
    check_message,
    measure_pair,
    offset_for,
    scale_for,
    shift_right_view,
)
from tests.conftest import REPO

EXAMPLES = REPO / "stereo" / "examples"


def _example(n=1):
    return read_rgb(EXAMPLES / f"flying{n}_left.png"), read_rgb(EXAMPLES / f"flying{n}_right.png")


def _misaligned(right, shift_px=3.0, roll_deg=1.0):
    h, w = right.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), roll_deg, 1.0)
    m[1, 2] += shift_px
    return cv2.warpAffine(right, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _save(path, rgb):
    Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def test_rectified_pairs_pass_and_misaligned_or_swapped_ones_are_named(tmp_path):
    from stereo.data.benchmarks import build_slice

    root = build_slice("generated-v1", "272x480", 2, tmp_path / "v1")
    lefts = sorted(root.rglob("frames_finalpass/**/left/*.png"))
    assert lefts
    for left in [*lefts, EXAMPLES / "flying1_left.png", EXAMPLES / "flying2_left.png"]:
        right = left.parent.parent / "right" / left.name if "frames_" in str(left) else EXAMPLES / left.name.replace(
            "left", "right")  # fmt: skip
        report = measure_pair(read_rgb(left), read_rgb(right))
        assert report is not None and report.rectified and not report.swapped, (left, report)
        assert check_message(report, "p") is None
    left, right = _example(2)
    bad = measure_pair(left, _misaligned(right))
    assert bad.worst_px > 3 * MAX_OFFSET_PX and abs(bad.roll_deg + 1.0) < 0.2  # OpenCV's angle turns the other way
    message = check_message(bad, "flying2")
    assert message.startswith("flying2: does not look rectified: rows differ by up to") and "rectify" in message
    swapped = measure_pair(right, left)
    assert swapped.swapped and "the views look swapped" in check_message(swapped, "flying2")
    assert check_message(None, "x").startswith("x: too few feature matches")


def test_the_check_warns_stops_or_stays_quiet_as_asked(tmp_path, caplog):
    left, right = _example(2)
    lp, rp = _save(tmp_path / "l.png", left), _save(tmp_path / "r.png", _misaligned(right))

    def run(mode):
        args = [f"left={lp}", f"right={rp}", "device=cpu", f"rectification_check={mode}"]
        return infer(load_config("infer", args), tmp_path / mode)

    with caplog.at_level(logging.WARNING, logger="stereo"):
        [result] = run("warn")
    assert "l: does not look rectified" in caplog.text and result.matches.worst_px > 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stereo"):
        [result] = run("off")
    assert "rectified" not in caplog.text and result.matches is None
    with pytest.raises(DataError, match="does not look rectified.*rectification_check=error"):
        run("error")
    assert not (tmp_path / "error" / "l.pfm").exists()


def test_auto_offset_brings_a_converged_pair_back_and_keeps_its_negative_disparities(tmp_path, capsys):
    left, right = _example(1)
    shifted = np.concatenate([np.repeat(right[:, :1], 30, axis=1), right[:, :-30]], axis=1)  # every d - 30 px
    report = measure_pair(left, shifted)
    assert report.disparity_low < -20 and offset_for(report) >= 30
    assert np.array_equal(shift_right_view(shifted, 30)[:, :-30], right[:, :-30])
    lp, rp, rs = _save(tmp_path / "l.png", left), _save(tmp_path / "r.png", right), _save(tmp_path / "rs.png", shifted)
    infer(load_config("infer", [f"left={lp}", f"right={rp}", "device=cpu"]), tmp_path / "plain")
    [res] = infer(load_config("infer", [f"left={lp}", f"right={rs}", "device=cpu", "disparity_offset=auto"]),
                  tmp_path / "auto")  # fmt: skip
    assert res.disparity_offset == offset_for(report) and res.disparity_min < 0
    plain, auto = read_pfm(tmp_path / "plain" / "l.pfm"), read_pfm(tmp_path / "auto" / "l.pfm")
    inner = np.s_[:, 40:-40]  # away from the borders the shifts fill in
    assert np.median(np.abs(auto[inner] - (plain[inner] - 30))) < 0.5
    assert not (tmp_path / "auto" / "l.png").exists() and (tmp_path / "auto" / "l_color.png").exists()
    out = capsys.readouterr().out
    assert f"right view shifted {res.disparity_offset} px (auto)" in out and "no 16-bit PNG, l.pfm holds them" in out
    record = json.loads((tmp_path / "auto" / "pairs.json").read_text())
    assert record["pairs"][0]["disparity_offset"] == res.disparity_offset
    assert record["pairs"][0]["matches"]["disparity_low"] == pytest.approx(report.disparity_low)


def test_auto_scale_fits_the_largest_disparity_in_the_range(tmp_path, capsys):
    left, right = (cv2.resize(v, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR) for v in _example(1))
    report = measure_pair(left, right)
    assert report.disparity_high > 150  # twice the example's ~90 px: beyond the shipped model's 128
    scale = scale_for(report, 128.0)
    assert scale < 1 and report.disparity_high * scale <= SCALE_MARGIN * 128 + 1e-6
    assert scale_for(measure_pair(*_example(1)), 128.0) == 1.0  # fits as it is
    lp, rp = _save(tmp_path / "l.png", left), _save(tmp_path / "r.png", right)
    [res] = infer(load_config("infer", [f"left={lp}", f"right={rp}", "device=cpu", "scale=auto"]), tmp_path / "o")
    assert res.scale == scale_for(res.matches, 128.0) < 1 and not res.saturated and res.disparity_max > 150
    assert f"scale {res.scale:g} (auto)" in capsys.readouterr().out
