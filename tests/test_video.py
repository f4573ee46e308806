"""Stereo video through stereo-infer: a 20-frame side-by-side video round-trips (a PFM per frame equal to
predicting that decoded frame, three videos of 20 frames), a killed run resumes after its last frame, and
bad videos or keys are one line."""

import cv2
import numpy as np
import pytest

from stereo.api import load_model
from stereo.config import InferAppConfig, check_config, load_config
from stereo.data.pfm import read_pfm
from stereo.errors import ConfigError, DataError
from stereo.infer import infer

FRAMES = 20


def _pairs(sample_root):
    lefts = sorted((sample_root / "FlyingThings3D" / "frames_cleanpass" / "TEST").rglob("left/*.png"))
    return [(cv2.imread(str(p)), cv2.imread(str(p.parent.parent / "right" / p.name))) for p in lefts]


def _write_video(path, frames, fps=10.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def _decoded(path):
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


@pytest.fixture
def sbs_video(sample_root, tmp_path):
    pairs = _pairs(sample_root)
    frames = [np.hstack(pairs[i % len(pairs)]) for i in range(FRAMES)]
    return _write_video(tmp_path / "walk.mp4", frames)


def _run(checkpoint, out, *args):
    return infer(load_config("infer", [f"checkpoint={checkpoint}", "device=cpu", *args]), out)


def test_a_side_by_side_video_round_trips(checkpoint, sbs_video, tmp_path):
    out = tmp_path / "out"
    r = _run(checkpoint, out, f"video={sbs_video}", "layout=sbs", "confidence=true")
    assert (r.frames, r.predicted, r.fps) == (FRAMES, FRAMES, 10.0)
    model = load_model(checkpoint, device="cpu")
    for k, frame in enumerate(_decoded(sbs_video)):
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255)
        half = rgb.shape[1] // 2
        expected = model.predict(rgb[:, :half], rgb[:, half:], confidence=True)
        assert np.array_equal(read_pfm(out / "walk" / "frames" / f"{k:06d}.pfm"), expected.disparity)
        conf = read_pfm(out / "walk" / "frames" / f"{k:06d}_confidence.pfm")
        assert np.array_equal(conf, expected.confidence)
    for kind in ("color", "disparity", "confidence"):
        frames = _decoded(out / f"walk_{kind}.mp4")
        assert len(frames) == FRAMES and frames[0].shape[:2] == (64, 128), kind


def test_a_killed_video_run_continues_after_its_last_frame(checkpoint, sbs_video, tmp_path):
    out = tmp_path / "out"
    _run(checkpoint, out, f"video={sbs_video}", "layout=sbs")
    frames = out / "walk" / "frames"
    kept = {k: (frames / f"{k:06d}.pfm").stat().st_mtime_ns for k in range(12)}
    for k in range(12, FRAMES):  # as if killed after frame 11
        (frames / f"{k:06d}.pfm").unlink()
    (out / "walk_color.mp4").unlink()
    r = _run(checkpoint, out, f"video={sbs_video}", "layout=sbs")
    assert (r.frames, r.predicted) == (FRAMES, FRAMES - 12)
    assert all((frames / f"{k:06d}.pfm").stat().st_mtime_ns == t for k, t in kept.items())  # not redone
    assert len(_decoded(out / "walk_color.mp4")) == FRAMES


def test_two_camera_videos_and_bad_videos(checkpoint, sample_root, tmp_path):
    pairs = _pairs(sample_root)
    left = _write_video(tmp_path / "cam_left.mp4", [pairs[i % len(pairs)][0] for i in range(6)])
    right = _write_video(tmp_path / "cam_right.mp4", [pairs[i % len(pairs)][1] for i in range(6)])
    r = _run(checkpoint, tmp_path / "out", f"left_video={left}", f"right_video={right}")
    assert r.frames == 6 and r.name == "cam_left"
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(DataError, match="notes.mp4: OpenCV cannot open this video"):
        _run(checkpoint, tmp_path / "bad", f"video={tmp_path / 'notes.mp4'}", "layout=sbs")
    refused = ((["video=v.mp4"], "needs layout=sbs"), (["left_video=a.mp4"], "go together"),
               (["video=v.mp4", "layout=sbs", "point_cloud=true"], "point_cloud=true: not available for video"),
               (["video=v.mp4", "layout=tb", "left=a.png"], "left=/right= are images"))  # fmt: skip
    for args, message in refused:
        with pytest.raises(ConfigError, match=message):
            check_config(load_config("infer", args), InferAppConfig)
