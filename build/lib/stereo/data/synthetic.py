"""A generated Scene Flow sample in the official layout, with exact stereo geometry.

Each scene is a textured background plane plus several textured planar objects (some slanted) at
different depths. A plane's left-view disparity is affine in the image coordinates,
``d(x, y) = d0 + gx (x - cx) + gy (y - cy)``, so the left-view x of a surface point seen at ``x_r`` in
the right view has a closed form. Both views are rendered by inverse mapping with a depth buffer
(larger disparity = nearer), which makes occlusions correct and gives
``left(x, y) = right(x - d(x, y), y)`` on every non-occluded pixel, up to texture interpolation.
Textures are band-limited so that this holds to within a few grey levels.

Written as layout (a) of :mod:`stereo.data.sceneflow` (one folder per subset)::

    <out>/FlyingThings3D/{frames_cleanpass,frames_finalpass,disparity}/{TRAIN,TEST}/{A,B,C}/NNNN/{left,right}/NNNN.{png,pfm}
    <out>/Driving/{...}/{15mm,35mm}_focallength/scene_{forwards,backwards}/{fast,slow}/{left,right}/NNNN.{png,pfm}
    <out>/Monkaa/{...}/<scene>/{left,right}/NNNN.{png,pfm}
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stereo.data.pfm import write_pfm
from stereo.progress import progress as progress_bar

# ---- textures ----------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5, base: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1], shape (h, w): smooth at large scale with finer detail on top."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2**o
        grid = rng.random((max(2, cells * h // max(h, w) + 2), cells + 2)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _palette(rng: np.random.Generator, t: np.ndarray, k: int = 3) -> np.ndarray:
    """Map t in [0, 1] (h, w) through a random k-colour gradient to RGB (h, w, 3)."""
    stops = np.linspace(0, 1, k)
    colours = rng.random((k, 3)).astype(np.float32)
    colours[rng.integers(k)] *= 0.3  # one dark stop for contrast
    return np.stack([np.interp(t, stops, colours[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def make_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-looking RGB texture in [0, 1], shape (h, w, 3): clouds, wood/marble, bricks or spots."""
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # clouds / rock
        tex = _palette(rng, _noise(rng, h, w, octaves=6), k=4)
    elif kind == 1:  # wood grain / marble: sinusoid bent by noise
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(0.03, 0.12)
        turb = rng.uniform(2, 10)
        t = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + turb * _noise(rng, h, w))
        tex = _palette(rng, 0.5 + 0.5 * t, k=3)
    elif kind == 2:  # bricks / tiles with mortar
        bh, bw = int(rng.integers(10, 40)), int(rng.integers(20, 80))
        row = (yy // bh).astype(np.int64)
        shift = (row % 2) * (bw // 2)
        col = ((xx + shift) // bw).astype(np.int64)
        tile_val = rng.random((int(row.max()) + 2, int(col.max()) + 2)).astype(np.float32)
        t = 0.6 * tile_val[row, col] + 0.4 * _noise(rng, h, w, octaves=4, base=8)
        tex = _palette(rng, t, k=3)
        mortar = ((yy % bh) < 2) | (((xx + shift) % bw) < 2)
        tex[mortar] = rng.random(3).astype(np.float32) * 0.5
    else:  # spots on a noisy ground
        tex = _palette(rng, _noise(rng, h, w, octaves=5), k=2)
        for _ in range(int(h * w / 1500) + 3):
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.circle(tex, centre, int(rng.integers(3, 25)), rng.random(3).tolist(), -1, cv2.LINE_AA)
    detail = _noise(rng, h, w, octaves=2, base=max(8, w // 6)) - 0.5  # fine grain for matching
    tex = np.clip(tex + 0.12 * detail[..., None], 0, 1)
    # Band-limit: interpolating twice (render, then warp) must not alias.
    return cv2.GaussianBlur(tex, (0, 0), 0.8)


# ---- scenes ------------------------------------------------------------------------------------------


@dataclass
class _Plane:
    """A textured planar patch; shape and disparity are defined in left-view pixel coordinates."""

    cx: float
    cy: float
    d0: float
    gx: float
    gy: float
    a: float  # half-extents of the superellipse |u/a|^p + |v/b|^p <= 1
    b: float
    angle: float
    power: float
    texture: np.ndarray  # (th, tw, 3), texel (0, 0) at left-view (x0, y0)
    x0: float
    y0: float
    background: bool = False

    def disparity_left(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.d0 + self.gx * (x - self.cx) + self.gy * (y - self.cy)

    def left_x(self, x_view: np.ndarray, y: np.ndarray, right: bool) -> np.ndarray:
        """Left-view x of the surface point seen at x_view in the given view."""
        if not right:
            return x_view
        # x_r = x_l - d(x_l, y) solved for x_l (the plane is affine, so this is exact)
        return (x_view + self.d0 - self.gx * self.cx + self.gy * (y - self.cy)) / (1.0 - self.gx)

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.background:
            return np.ones(x.shape, bool)
        c, s = np.cos(self.angle), np.sin(self.angle)
        u = ((x - self.cx) * c + (y - self.cy) * s) / self.a
        v = (-(x - self.cx) * s + (y - self.cy) * c) / self.b
        return np.abs(u) ** self.power + np.abs(v) ** self.power <= 1.0


def _random_scene(rng: np.random.Generator, h: int, w: int, max_disp: float, n_objects: int) -> list[_Plane]:
    scene_max = rng.uniform(0.3, 1.0) * max_disp  # varied disparity ranges across scenes
    far = rng.uniform(0.5, 0.15 * scene_max)
    # Background: a plane, often tilted like a ground or a wall receding to one side.
    gy = rng.uniform(0, 0.12 * scene_max / h) if rng.random() < 0.6 else 0.0
    gx = rng.uniform(-0.05, 0.05) * scene_max / w
    d_corners = [far + gx * (x - w / 2) + gy * (y - h / 2) for x in (0, w) for y in (0, h)]
    d0 = far + max(0.0, 0.5 - min(d_corners))
    margin = int(np.ceil(max(d_corners) - min(d_corners) + d0 + 4))
    planes = [_Plane(w / 2, h / 2, d0, gx, gy, 1, 1, 0, 2, make_texture(rng, h + 8, w + margin + 8), -4, -4, True)]
    for _ in range(n_objects):
        size = rng.uniform(0.08, 0.35) * min(h, w) * np.array([1.0, rng.uniform(0.4, 1.6)])
        a, b = float(size[0]), float(size[1])
        cx, cy = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(0, h)
        d0 = rng.uniform(far + 0.1 * scene_max, scene_max)
        gx = gy = 0.0
        if rng.random() < 0.4:  # slanted: disparity changes by up to ~15% of d0 across the object
            gx = rng.uniform(-0.15, 0.15) * d0 / max(a, b)
            gy = rng.uniform(-0.15, 0.15) * d0 / max(a, b)
            gx = float(np.clip(gx, -0.2, 0.2))  # keeps x_l -> x_r monotonic
        r = max(a, b)
        planes.append(
            _Plane(
                cx,
                cy,
                d0,
                gx,
                gy,
                a,
                b,
                rng.uniform(0, np.pi),
                float(rng.choice([1.0, 1.5, 2.0, 4.0, 8.0])),
                make_texture(rng, int(2 * r) + 8, int(2 * r) + 8),
                cx - r - 4,
                cy - r - 4,
            )
        )
    return planes


def _render(planes: list[_Plane], h: int, w: int, right: bool) -> tuple[np.ndarray, np.ndarray]:
    """Render one view: (RGB float32 (h, w, 3), disparity of that view (h, w), positive)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.zeros((h, w, 3), np.float32)
    depth = np.full((h, w), -np.inf, np.float32)  # disparity of the nearest surface so far
    disp = np.zeros((h, w), np.float32)
    for p in planes:
        xl = p.left_x(xx, yy, right).astype(np.float32)
        d = p.disparity_left(xl, yy).astype(np.float32)
        hit = p.inside(xl, yy) & (d > depth)
        if not hit.any():
            continue
        colour = cv2.remap(p.texture, xl - p.x0, yy - p.y0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        image[hit] = colour[hit]
        depth[hit] = d[hit]
        # Left view stores d(x_l); right view stores x_l - x_r, the same surface point's disparity.
        disp[hit] = d[hit]
    return image, disp


def render_pair(
    rng: np.random.Generator, height: int, width: int, max_disp: float, n_objects: int
) -> dict[str, np.ndarray]:
    """One stereo pair: ``left``, ``right`` (float RGB (H, W, 3) in [0, 1]), ``disp_left``,
    ``disp_right`` (float32 (H, W), pixels, positive) and ``final_left``/``final_right`` (blurred)."""
    planes = _random_scene(rng, height, width, max_disp, n_objects)
    left, disp_left = _render(planes, height, width, right=False)
    right, disp_right = _render(planes, height, width, right=True)
    # Final pass: the clean frame with defocus and a little horizontal motion blur.
    sigma = rng.uniform(0.6, 1.4)
    k = int(rng.integers(1, 4)) * 2 + 1
    motion = np.zeros((k, k), np.float32)
    motion[k // 2, :] = 1.0 / k
    final = [cv2.filter2D(cv2.GaussianBlur(v, (0, 0), sigma), -1, motion) for v in (left, right)]
    return {
        "left": left,
        "right": right,
        "disp_left": disp_left,
        "disp_right": disp_right,
        "final_left": final[0],
        "final_right": final[1],
    }


# ---- the dataset tree --------------------------------------------------------------------------------

_DRIVING = [
    f"{f}_focallength/scene_{d}/{s}"
    for f in ("15mm", "35mm")
    for d in ("forwards", "backwards")
    for s in ("fast", "slow")
]
_FRAMES_PER_SEQUENCE = 3


def _layout(train_pairs: int, test_pairs: int) -> list[tuple[str, str, str]]:
    """(subset folder, sequence dir below frames_*/, frame name) for every pair."""
    n_ft = train_pairs - 2 * (train_pairs // 4)
    n_driving = n_monkaa = train_pairs // 4
    out = []
    for split, n in (("TRAIN", n_ft), ("TEST", test_pairs)):
        for i in range(n):
            seq, frame = divmod(i, _FRAMES_PER_SEQUENCE)
            letter = "ABC"[seq % 3]
            out.append(("FlyingThings3D", f"{split}/{letter}/{seq // 3:04d}", f"{6 + frame:04d}"))
    for i in range(n_driving):
        seq, frame = divmod(i, _FRAMES_PER_SEQUENCE)
        out.append(("Driving", _DRIVING[seq % len(_DRIVING)], f"{1 + frame + 10 * (seq // 8):04d}"))
    for i in range(n_monkaa):
        seq, frame = divmod(i, _FRAMES_PER_SEQUENCE)
        out.append(("Monkaa", f"synthetic_scene_{seq:02d}", f"{frame:04d}"))
    return out


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"could not write {path}")


def generate_sceneflow_sample(
    out: str | os.PathLike,
    height: int = 540,
    width: int = 960,
    train_pairs: int = 30,
    test_pairs: int = 10,
    seed: int = 0,
    max_disp: float | None = None,
    objects: tuple[int, int] = (4, 9),
    progress: bool = True,
) -> dict:
    """Write a Scene Flow sample under ``out`` in the official layout (a); returns its manifest.

    ``train_pairs`` is spread over the three subsets (half FlyingThings3D TRAIN, a quarter each Driving
    and Monkaa); ``test_pairs`` go to FlyingThings3D TEST. Disparities reach about ``max_disp`` pixels
    (default 160 * width / 960). Deterministic from ``seed``: each pair has its own generator.

    The tree is built in a temporary sibling folder and renamed into place, so an interrupted run
    leaves nothing half-written. An existing ``out`` with the same manifest is reused as it is;
    an existing non-empty ``out`` with anything else is an error.
    """
    out = Path(out)
    if height < 32 or width < 64:
        raise ValueError(f"sample frames must be at least 32x64, got {height}x{width}")
    if train_pairs < 0 or test_pairs < 0 or train_pairs + test_pairs == 0:
        raise ValueError(f"need a positive number of pairs, got train={train_pairs} test={test_pairs}")
    max_disp = float(max_disp if max_disp is not None else 160.0 * width / 960.0)
    manifest = {
        "generator": "stereo.data.synthetic",
        "version": 1,
        "height": height,
        "width": width,
        "train_pairs": train_pairs,
        "test_pairs": test_pairs,
        "seed": seed,
        "max_disp": max_disp,
        "objects": list(objects),
    }
    marker = out / "sample.json"
    if out.exists() and any(out.iterdir()):
        if marker.is_file() and json.loads(marker.read_text()) == manifest:
            return manifest
        raise FileExistsError(
            f"{out} exists and is not an identical generated sample (see {marker}); choose another folder or remove it"
        )
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        items = _layout(train_pairs, test_pairs)
        pairs = progress_bar(items, desc="generating Scene Flow sample", unit="pair", enabled=progress)
        for index, (subset, seq, frame) in enumerate(pairs):
            rng = np.random.default_rng([seed, index])
            pair = render_pair(rng, height, width, max_disp, int(rng.integers(objects[0], objects[1] + 1)))
            base = tmp / subset
            for view in ("left", "right"):
                _write_png(base / "frames_cleanpass" / seq / view / f"{frame}.png", pair[view])
                _write_png(base / "frames_finalpass" / seq / view / f"{frame}.png", pair[f"final_{view}"])
                pfm = base / "disparity" / seq / view / f"{frame}.pfm"
                pfm.parent.mkdir(parents=True, exist_ok=True)
                write_pfm(pfm, pair[f"disp_{view}"])
        (tmp / "sample.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
