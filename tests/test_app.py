"""stereo-app's library side, without a browser: the files a request writes are stereo-infer's, bad input is
one status line, the 3-D view's GLB holds the points, and the server refuses a port in use."""

import json
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stereo.app import EXAMPLES, DepthService, Request, examples, port_error
from stereo.calib import read_ply, write_glb
from stereo.config import AppAppConfig, load_config
from stereo.data.images import split_frame
from stereo.data.pfm import read_pfm
from stereo.errors import DataError

LEFT, RIGHT = EXAMPLES / "flying1_left.png", EXAMPLES / "flying1_right.png"
LEFT_PIXELS = 272 * 480


def _request(left=None, right=None, sbs=None, **kw):
    settings = {"scale": 1.0, "min_confidence": 0.5, "refinement": True, "adapt": False, "focal_px": None,
                "baseline": None, "calib": None, **kw}  # fmt: skip
    return Request(None if left is None else str(left), None if right is None else str(right),
                   None if sbs is None else str(sbs), **settings)  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return DepthService(AppAppConfig(device="cpu"), tmp_path_factory.mktemp("app"))


def read_glb(path):
    """(positions (N, 3) float32, colours (N, 4) uint8, the glTF JSON) of a GLB written by write_glb."""
    raw = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", raw)
    assert magic == b"glTF" and version == 2 and length == len(raw)
    n_json, kind = struct.unpack_from("<I4s", raw, 12)
    assert kind == b"JSON"
    gltf = json.loads(raw[20 : 20 + n_json])
    n_bin, kind = struct.unpack_from("<I4s", raw, 20 + n_json)
    assert kind == b"BIN\0"
    blob = raw[28 + n_json : 28 + n_json + n_bin]
    views = gltf["bufferViews"]
    pos = np.frombuffer(blob, "<f4", offset=views[0]["byteOffset"], count=3 * gltf["accessors"][0]["count"])
    col = np.frombuffer(blob, np.uint8, offset=views[1]["byteOffset"], count=4 * gltf["accessors"][1]["count"])
    return pos.reshape(-1, 3), col.reshape(-1, 4), gltf


def test_glb_holds_the_points_in_gltf_axes_as_points(tmp_path):
    pts = np.array([[0.5, -1.0, 2.0], [1.5, 2.0, 4.0], [-3.0, 0.25, 8.0]], np.float32)
    rgb = np.array([[255, 0, 0], [0, 255, 0], [1, 2, 3]], np.uint8)
    write_glb(tmp_path / "c.glb", pts, rgb)
    pos, col, gltf = read_glb(tmp_path / "c.glb")
    assert gltf["meshes"][0]["primitives"][0]["mode"] == 0  # POINTS
    np.testing.assert_array_equal(pos, pts * np.float32([1, -1, -1]))  # y up, viewer on +z
    np.testing.assert_array_equal(col[:, :3], rgb) and np.testing.assert_array_equal(col[:, 3], 255)
    assert gltf["accessors"][0]["min"] == pos.min(0).tolist() and gltf["accessors"][0]["max"] == pos.max(0).tolist()


def test_a_request_writes_stereo_infers_files(service, tmp_path):
    from stereo.infer import infer

    answer = service.answer(_request(LEFT, RIGHT))
    assert not answer.status.startswith("error"), answer.status
    infer(load_config("infer", [f"left={LEFT}", f"right={RIGHT}", "device=cpu", "confidence=true"]), tmp_path)
    files = {f.rsplit("/", 1)[1].replace("flying1", ""): f for f in answer.files}
    for suffix in (".pfm", "_confidence.pfm"):
        a, b = read_pfm(files[suffix]), read_pfm(tmp_path / f"flying1_left{suffix}")
        assert a.dtype == b.dtype and np.array_equal(a, b)  # bit for bit
    shown, written = (np.asarray(Image.open(p)) for p in (answer.color, tmp_path / "flying1_left_color.png"))
    assert np.array_equal(shown, written)
    points, colours = read_ply(files[".ply"])
    assert len(points) == len(colours) > 0.5 * LEFT_PIXELS and np.isfinite(points).all()
    pos, _, _ = read_glb(Path(answer.cloud))
    assert 0 < len(pos) <= service.cfg.max_points and np.isfinite(pos).all()
    shaded = np.asarray(Image.open(answer.shaded))
    assert shaded.shape == (272, 480, 3) and "of pixels below confidence 0.5" in answer.status


def test_side_by_side_frames_split_in_halves_and_odd_widths_are_refused(service, tmp_path):
    frame = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    left, right = split_frame(frame, "sbs", "f.png")
    assert np.array_equal(left, frame[:, :3]) and np.array_equal(right, frame[:, 3:])
    top, bottom = split_frame(frame, "tb", "f.png")
    assert np.array_equal(top, frame[:2]) and np.array_equal(bottom, frame[2:])
    with pytest.raises(DataError, match="even width"):
        split_frame(frame[:, :5], "sbs", "f.png")
    with pytest.raises(DataError, match="even height"):
        split_frame(frame[:3], "tb", "f.png")
    odd = tmp_path / "odd.png"
    Image.fromarray(np.zeros((32, 65, 3), np.uint8)).save(odd)
    assert service.answer(_request(sbs=odd)).status.startswith("error: odd.png: a side-by-side frame needs an even")
    sbs = [row[2] for row in examples() if row[2]]
    assert sbs and service.answer(_request(sbs=sbs[0])).files


@pytest.mark.parametrize("case", ["text", "sizes", "missing", "both"])
def test_bad_input_is_one_status_line_and_the_service_keeps_serving(service, tmp_path, case):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(small)
    request = {"text": _request(text, RIGHT), "sizes": _request(LEFT, small), "missing": _request(LEFT, None),
               "both": _request(LEFT, RIGHT, sbs=LEFT)}[case]  # fmt: skip
    answer = service.answer(request)
    assert answer.status.startswith("error: ") and "\n" not in answer.status and "Traceback" not in answer.status
    assert answer.files is None and answer.color is None
    expected = {"text": "notes.txt", "sizes": "size", "missing": "left and a right", "both": "not both"}[case]
    assert expected in answer.status
    assert service.answer(_request(LEFT, RIGHT)).files  # still serving


def test_a_port_in_use_is_named_before_anything_loads():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert f"port={port} is in use" in port_error("127.0.0.1", port)
    assert port_error("127.0.0.1", port) is None
