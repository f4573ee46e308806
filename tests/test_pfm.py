import struct

import cv2
import numpy as np
import pytest

from stereo.data.pfm import read_pfm, write_pfm


@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
@pytest.mark.parametrize("little_endian", [True, False])
def test_roundtrip(tmp_path, shape, little_endian):
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 100
    write_pfm(tmp_path / "a.pfm", arr, little_endian=little_endian)
    back = read_pfm(tmp_path / "a.pfm")
    assert back.dtype == np.float32 and back.shape == shape
    np.testing.assert_array_equal(back, arr)


def test_opencv_reads_what_we_write(tmp_path):
    arr = np.random.default_rng(1).uniform(0, 200, size=(9, 13)).astype(np.float32)
    write_pfm(tmp_path / "a.pfm", arr)
    cv = cv2.imread(str(tmp_path / "a.pfm"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(cv, arr)


def test_we_read_what_opencv_writes(tmp_path):
    rng = np.random.default_rng(2)
    gray = rng.uniform(-5, 300, size=(11, 6)).astype(np.float32)
    cv2.imwrite(str(tmp_path / "g.pfm"), gray)
    np.testing.assert_array_equal(read_pfm(tmp_path / "g.pfm"), gray)
    colour = rng.uniform(0, 1, size=(3, 4, 3)).astype(np.float32)  # OpenCV stores BGR as PF's RGB
    cv2.imwrite(str(tmp_path / "c.pfm"), colour)
    np.testing.assert_array_equal(read_pfm(tmp_path / "c.pfm"), colour[..., ::-1])


def test_hand_built_big_endian_bottom_to_top(tmp_path):
    # 2x3 image, rows top-to-bottom: [1, 2, 3], [4, 5, 6]; stored bottom row first, big-endian.
    body = struct.pack(">6f", 4, 5, 6, 1, 2, 3)
    (tmp_path / "be.pfm").write_bytes(b"Pf\n3 2\n1.0\n" + body)
    np.testing.assert_array_equal(read_pfm(tmp_path / "be.pfm"), [[1, 2, 3], [4, 5, 6]])
    # Same data little-endian, header on one line with a scale other than 1: the scale sign counts.
    body = struct.pack("<6f", 4, 5, 6, 1, 2, 3)
    (tmp_path / "le.pfm").write_bytes(b"Pf 3 2 -0.5\n" + body)
    np.testing.assert_array_equal(read_pfm(tmp_path / "le.pfm"), [[1, 2, 3], [4, 5, 6]])


def test_truncated_file_names_the_file(tmp_path):
    write_pfm(tmp_path / "t.pfm", np.ones((10, 10), np.float32))
    data = (tmp_path / "t.pfm").read_bytes()
    (tmp_path / "t.pfm").write_bytes(data[:-7])
    with pytest.raises(ValueError, match=r"t\.pfm: PFM data truncated: header says 10x10x1"):
        read_pfm(tmp_path / "t.pfm")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"P6\n3 2\n255\n" + bytes(18), "not a PFM file"),
        (b"Pf\n3\n", "not a PFM file"),
        (b"", "not a PFM file"),
        (b"Pf\n3 2\n0\n" + bytes(24), "scale must be non-zero"),
        (b"Pf\n3 2\n-1\n" + bytes(30), "longer than its header says"),
    ],
)
def test_malformed_files(tmp_path, content, message):
    (tmp_path / "bad.pfm").write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        read_pfm(tmp_path / "bad.pfm")
    assert "bad.pfm" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_pfm(tmp_path / "nope.pfm")


def test_write_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="expected an"):
        write_pfm(tmp_path / "x.pfm", np.zeros((2, 2, 2)))
    assert not list(tmp_path.iterdir())
