"""Portable Float Map (PFM) I/O, the format of Scene Flow's disparity maps.

Layout: a text header ``PF`` (3 channels) or ``Pf`` (1 channel), whitespace, ``width height``,
whitespace, a scale whose sign gives the byte order (negative = little-endian), one whitespace byte,
then float32 rows stored bottom-to-top.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from stereo.errors import DataError, MissingFileError
from stereo.io import atomic_write

_HEADER = re.compile(rb"^(PF|Pf)\s+(\d+)\s+(\d+)\s+([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s")
_MAX_HEADER = 256  # bytes; real headers are ~20


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """Read a PFM file into a float32 array: (H, W) for ``Pf``, (H, W, 3) for ``PF``, top row first.

    Raises:
        MissingFileError: the file does not exist (a ``FileNotFoundError``).
        DataError: the header is malformed or the data is truncated or too long; names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"PFM file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    m = _HEADER.match(raw[:_MAX_HEADER])
    if m is None:
        start = raw[:24]
        raise DataError(
            f"{path}: not a PFM file: expected a header 'PF' or 'Pf', width, height and scale, found {start!r}"
        )
    kind, width, height, scale = m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4))
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: PFM header gives an empty image ({width}x{height})")
    if scale == 0:
        raise DataError(f"{path}: PFM scale must be non-zero (its sign gives the byte order)")
    channels = 3 if kind == b"PF" else 1
    expected = width * height * channels * 4
    data = memoryview(raw)[m.end() :]
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{path}: PFM data {what}: header says {width}x{height}x{channels} float32 = {expected} bytes, "
            f"file holds {len(data)}"
        )
    dtype = np.dtype("<f4" if scale < 0 else ">f4")
    arr = np.frombuffer(data, dtype=dtype).reshape((height, width, channels) if channels == 3 else (height, width))
    return np.ascontiguousarray(arr[::-1], dtype=np.float32)  # rows are stored bottom-to-top


def write_pfm(path: str | os.PathLike, array: np.ndarray, little_endian: bool = True) -> None:
    """Write a (H, W) or (H, W, 3) array as float32 PFM, atomically (temporary file, then rename)."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"write_pfm({path}): expected an (H, W) or (H, W, 3) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"write_pfm({path}): cannot write an empty image of shape {arr.shape}")
    kind = "PF" if arr.ndim == 3 else "Pf"
    dtype = np.dtype("<f4" if little_endian else ">f4")
    body = np.ascontiguousarray(arr[::-1], dtype=dtype).tobytes()
    header = f"{kind}\n{arr.shape[1]} {arr.shape[0]}\n{-1.0 if little_endian else 1.0}\n".encode()
    with atomic_write(path) as tmp:
        tmp.write_bytes(header + body)
