"""Image reading: any PNG/WebP/JPEG (8- or 16-bit, gray, RGB or RGBA) to float RGB in [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from stereo.errors import DataError, MissingFileError

IMAGE_EXTENSIONS = (".png", ".webp", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff")


MAX_PIXELS = 100_000_000  # refused before decoding: a forged header must not allocate gigabytes

# EXIF orientation -> the array operation that shows the image as a photo viewer does (after decoding,
# which ignores the tag); rows first: (H, W, ...) arrays.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _read_header(path: str | os.PathLike) -> tuple[int, int, int, int] | None:
    """(width, height, frames, EXIF orientation) from the file's header, without decoding the pixels;
    None for formats PIL cannot identify (left to OpenCV). An oversized header is a :class:`DataError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return *im.size, getattr(im, "n_frames", 1), int(im.getexif().get(0x0112, 1) or 1)
    except Image.DecompressionBombError:
        raise DataError(f"{path}: the image is larger than {MAX_PIXELS:,} pixels; refusing to decode it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def _header(path: Path) -> int:
    """Check what the file's header promises before decoding it; returns its EXIF orientation (1 = none)."""
    header = _read_header(path)
    if header is None:
        return 1
    w, h, frames, orientation = header
    if w * h > MAX_PIXELS:
        raise DataError(f"{path}: {w}x{h} is larger than {MAX_PIXELS:,} pixels; refusing to decode it")
    if frames > 1:
        raise DataError(f"{path}: holds {frames} frames (an animation or a multi-page file); save the frame you "
                        "want as a single image")  # fmt: skip
    return orientation if orientation in _ORIENT else 1


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the file's header as a viewer shows it, without decoding; None when unknown
    (then the decoder reports the file)."""
    try:
        header = _read_header(path)
    except DataError:
        return None
    if header is None:
        return None
    w, h, _, orientation = header
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def imread_checked(path: str | os.PathLike, flags: int = cv2.IMREAD_UNCHANGED, what: str = "image") -> np.ndarray:
    """``cv2.imread`` that names the file: MissingFileError when absent, DataError when undecodable,
    over :data:`MAX_PIXELS` or multi-frame. An EXIF orientation is applied, so the array is what a photo
    viewer shows."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    orientation = _header(path)
    img = cv2.imread(str(path), flags | cv2.IMREAD_IGNORE_ORIENTATION if flags != cv2.IMREAD_UNCHANGED else flags)
    if img is None:
        raise DataError(f"{path}: cannot decode as an image (corrupt file or unsupported format)")
    if orientation != 1:
        img = np.ascontiguousarray(_ORIENT[orientation](img))
    return img


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 RGB in [0, 1], shape (H, W, 3).

    Grayscale is replicated to three channels, alpha is dropped, 16-bit images are scaled by 1/65535.

    Raises:
        MissingFileError: the file does not exist (a ``FileNotFoundError``).
        DataError: the file exists but cannot be decoded as an image; names the file (a ``ValueError``).
    """
    path = Path(path)
    img = imread_checked(path)
    if img.dtype == np.uint8:
        scale = 1.0 / 255.0
    elif img.dtype == np.uint16:
        scale = 1.0 / 65535.0
    elif img.dtype in (np.float32, np.float64):
        scale = 1.0
    else:
        raise DataError(f"{path}: unsupported image sample type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise DataError(f"{path}: expected 1, 3 or 4 channels, found {img.shape[2]}")
    return img.astype(np.float32) * np.float32(scale)


def split_frame(frame: np.ndarray, layout: str, source: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The (left, right) views of a frame (H, W, C) that holds both: ``sbs`` side by side (left | right),
    ``tb`` top (left) and bottom (right). A frame that does not split evenly is refused, naming ``source``."""
    h, w = frame.shape[:2]
    if layout == "sbs":
        if w % 2:
            raise DataError(f"{source}: a side-by-side frame needs an even width (left half | right half), got {w} px")
        return frame[:, : w // 2], frame[:, w // 2 :]
    if layout == "tb":
        if h % 2:
            raise DataError(f"{source}: a top-bottom frame needs an even height (left view on top), got {h} px")
        return frame[: h // 2], frame[h // 2 :]
    raise ValueError(f"layout={layout!r}: expected sbs or tb")


def check_same_size(left: np.ndarray, right: np.ndarray, left_path: os.PathLike, right_path: os.PathLike) -> None:
    """Raise :class:`DataError` naming both files when two (H, W, ...) images differ in size."""
    if left.shape[:2] != right.shape[:2]:
        raise DataError(
            f"left and right images differ in size: {left_path} is {left.shape[1]}x{left.shape[0]}, "
            f"{right_path} is {right.shape[1]}x{right.shape[0]}"
        )


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) array -> contiguous float (3, H, W) tensor (add ``[None]`` for a batch of one)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
