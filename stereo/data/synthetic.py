"""Generated stereo data in the official Scene Flow layout, with exact ground truth (generator v2).

A scene is a far background plane (often tilted like a floor or a receding wall) and 5-40 objects in
front of it: ellipsoids and spheres, cylinders, boxes at any angle, flat patches, smooth height fields,
and thin structures (rods, wires, fences), overlapping so that occlusion boundaries are everywhere.
Both views are ray cast exactly (:mod:`stereo.data.scene3d`), so the disparity of every pixel is the
true ``f * B / Z`` and ``left(x, y) = right(x - d, y)`` on every non-occluded pixel up to texture
interpolation and the (mild, view-dependent) specular term.

Appearance: procedural textures (clouds, wood/marble, bricks, spots, fine grain, stripes and grids,
text-like strokes, textureless and weakly textured surfaces), Lambert shading from one light with a
mild Blinn-Phong highlight, and a global gain/gamma/colour change. The clean pass is that render; the
final pass adds defocus, motion blur, per-view gain/gamma/colour differences and sensor noise, so clean
and final differ as in Scene Flow.

Written as layout (a) of :mod:`stereo.data.sceneflow` (one folder per subset)::

    <out>/FlyingThings3D/{frames_cleanpass,frames_finalpass,disparity}/{TRAIN,TEST}/{A,B,C}/NNNN/{left,right}/NNNN.{png,pfm}
    <out>/Driving/{...}/{15mm,35mm}_focallength/scene_{forwards,backwards}/{fast,slow}/{left,right}/NNNN.{png,pfm}
    <out>/Monkaa/{...}/<scene>/{left,right}/NNNN.{png,pfm}
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stereo.data import scene3d as s3
from stereo.data.pfm import write_pfm
from stereo.progress import progress as progress_bar

GENERATOR_VERSION = 2
TEXTURE_KINDS = ("clouds", "wood", "bricks", "spots", "grain", "stripes", "grid", "text", "flat", "weak")
_TEXTURE_WEIGHTS = np.array([12, 10, 9, 9, 10, 8, 7, 8, 6, 6], float)
SHAPES = ("ellipsoid", "cylinder", "box", "patch", "heightfield", "rod", "fence")
_SHAPE_WEIGHTS = np.array([16, 12, 18, 16, 8, 8, 5], float)


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


def make_texture(rng: np.random.Generator, h: int, w: int, kind: str | None = None) -> np.ndarray:
    """An RGB texture in [0, 1], shape (h, w, 3), of one of :data:`TEXTURE_KINDS` (random if None).

    Every texture is band-limited (Gaussian, sigma 0.8 texel) so that sampling it twice (render,
    then warp) does not alias.
    """
    kind = kind or str(rng.choice(TEXTURE_KINDS, p=_TEXTURE_WEIGHTS / _TEXTURE_WEIGHTS.sum()))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "clouds":
        tex = _palette(rng, _noise(rng, h, w, octaves=6), k=4)
    elif kind == "wood":  # wood grain / marble: a sinusoid bent by noise
        theta, freq, turb = rng.uniform(0, np.pi), rng.uniform(0.03, 0.12), rng.uniform(2, 10)
        t = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + turb * _noise(rng, h, w))
        tex = _palette(rng, 0.5 + 0.5 * t, k=3)
    elif kind == "bricks":
        bh, bw = int(rng.integers(8, 40)), int(rng.integers(16, 80))
        row = (yy // bh).astype(np.int64)
        shift = (row % 2) * (bw // 2)
        col = ((xx + shift) // bw).astype(np.int64)
        tile_val = rng.random((int(row.max()) + 2, int(col.max()) + 2)).astype(np.float32)
        tex = _palette(rng, 0.6 * tile_val[row, col] + 0.4 * _noise(rng, h, w, octaves=4, base=8), k=3)
        tex[((yy % bh) < 2) | (((xx + shift) % bw) < 2)] = rng.random(3).astype(np.float32) * 0.5
    elif kind == "spots":
        tex = _palette(rng, _noise(rng, h, w, octaves=5), k=2)
        for _ in range(int(h * w / 1500) + 3):
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.circle(tex, centre, int(rng.integers(2, 25)), rng.random(3).tolist(), -1, cv2.LINE_AA)
    elif kind == "grain":  # high-frequency detail everywhere
        tex = _palette(rng, _noise(rng, h, w, octaves=3, base=max(8, w // 4)), k=3)
    elif kind == "stripes":  # repetitive: the ambiguous case for matching
        theta, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
        t = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        t = np.clip(t * rng.uniform(1, 6), -1, 1)  # from sine to nearly square waves
        tex = _palette(rng, 0.5 + 0.5 * t, k=2)
    elif kind == "grid":  # grids and checkerboards
        p = rng.uniform(6, 30)
        if rng.random() < 0.5:
            t = ((xx // p + yy // p) % 2).astype(np.float32)
        else:
            t = (((xx % p) < 2) | ((yy % p) < 2)).astype(np.float32)
        tex = _palette(rng, t, k=2)
    elif kind == "text":  # text-like strokes on a plain ground
        tex8 = np.ones((h, w, 3), np.uint8) * rng.integers(0, 256, 3).astype(np.uint8)  # putText needs 8-bit
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        scale = rng.uniform(0.3, 1.2)
        step = max(8, int(30 * scale))
        for y in range(step, h + step, step):
            line = "".join(rng.choice(list(letters + "   "), size=max(1, w // max(6, int(16 * scale)))))
            cv2.putText(tex8, line, (int(rng.integers(-10, 5)), y), int(rng.integers(0, 8)), scale,
                        rng.integers(0, 256, 3).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA)  # fmt: skip
        tex = tex8.astype(np.float32) / 255
    elif kind == "flat":  # textureless: only shading will vary
        tex = np.ones((h, w, 3), np.float32) * rng.random(3).astype(np.float32)
        tex += 0.004 * (_noise(rng, h, w, octaves=2)[..., None] - 0.5)
    elif kind == "weak":  # weakly textured: low-contrast noise
        tex = rng.random(3).astype(np.float32) + 0.04 * (_noise(rng, h, w, octaves=4)[..., None] - 0.5)
    else:
        raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")
    if kind not in ("flat", "weak", "grain"):
        detail = _noise(rng, h, w, octaves=2, base=max(8, w // 6)) - 0.5  # fine grain for matching
        tex = tex + 0.1 * detail[..., None]
    return cv2.GaussianBlur(np.clip(tex, 0, 1).astype(np.float32), (0, 0), 0.8)


# ---- scenes ------------------------------------------------------------------------------------------


@dataclass
class _Object:
    shape: s3.Shape
    texture: np.ndarray  # (th, tw, 3)
    texel: float  # world units per texel
    uv0: tuple[float, float]  # texture coordinate of texel (0, 0)
    specular: float
    shininess: float
    textureless: bool


def _sample_disparity(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Object disparities: uniform over the range, plus a 10% share of near objects with large disparity."""
    if rng.random() < 0.1:
        return float(rng.uniform(0.7, 1.0) * hi)
    return float(rng.uniform(lo, hi))


def _make_object(
    rng: np.random.Generator, cam: s3.Camera, h: int, w: int, d_bg: float, max_disp: float, kind: str | None = None
) -> _Object:
    kind = kind or str(rng.choice(SHAPES, p=_SHAPE_WEIGHTS / _SHAPE_WEIGHTS.sum()))
    d = _sample_disparity(rng, d_bg + 0.05 * max_disp, max_disp)  # of the object's nearest point
    size_px = float(rng.uniform(0.08, 0.45) * min(h, w) * (1.6 if kind in ("rod", "fence") else 1.0))
    size_px *= 1.0 - 0.3 * d / max_disp  # near objects hide what is behind them: keep them a bit smaller
    # Centre depth z such that the bounding sphere (radius <= 1.8 x the half-size extent = size_px z / f)
    # starts at depth f B / d: no surface point exceeds disparity d <= max_disp.
    z = cam.f * cam.baseline / d / (1.0 - 1.8 * size_px / cam.f)
    extent = size_px * z / cam.f  # world half-size of the object at its depth
    px, py = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)
    centre = np.array([(px - cam.cx) * z / cam.f, (py - cam.cy) * z / cam.f, z])
    R = s3.rotation(rng)
    e = extent * rng.uniform(0.5, 1.0, size=3)
    if kind == "ellipsoid":
        radii = e if rng.random() < 0.6 else np.full(3, e[0])
        shape: s3.Shape = s3.Ellipsoid(centre, R, radii)
    elif kind == "cylinder":
        shape = s3.Cylinder(centre, R, float(e[0] * 0.6), float(e[1]))
    elif kind == "box":
        shape = s3.Box(centre, R, e * np.array([1.0, 1.0, rng.uniform(0.2, 1.0)]))
    elif kind == "patch":  # flat superellipses, mostly facing the camera, some slanted
        R = s3.rotation(rng, max_angle=1.0)
        shape = s3.Patch(centre, R, float(e[0]), float(e[1]), float(rng.choice([1.0, 1.5, 2.0, 4.0, 8.0])))
    elif kind == "heightfield":
        R = s3.rotation(rng, max_angle=0.5)
        waves = []
        for _ in range(int(rng.integers(2, 5))):
            k = rng.uniform(1.0, 4.0) / extent
            ang = rng.uniform(0, np.pi)
            amp = rng.uniform(0.02, 0.12) / k  # slope amp * k <= 0.12 per wave: well below 0.5 in total
            waves.append([amp, k * np.cos(ang), k * np.sin(ang), rng.uniform(0, 2 * np.pi)])
        shape = s3.HeightField(centre, R, float(e[0]), float(e[1]), np.array(waves))
    elif kind == "rod":  # thin structures: wires and poles, 1-4 px thick
        thick = rng.uniform(0.5, 2.0) * z / cam.f
        shape = s3.Cylinder(centre, R, float(thick), float(extent))
    else:  # fence: parallel thin slats, a box each, sharing one orientation
        R = s3.rotation(rng, max_angle=0.6)
        slats, gap = int(rng.integers(4, 10)), rng.uniform(2.0, 5.0)
        width = extent / (slats * gap)
        return _fence(rng, centre, R, slats, width, gap, extent, z)
    return _texture_object(rng, shape, z, cam)


class _Union(s3.Shape):
    """Several shapes rendered as one object (a fence)."""

    def __init__(self, parts: list[s3.Shape]) -> None:
        super().__init__(np.mean([p.center for p in parts], 0))
        self.parts = parts

    def radius(self) -> float:
        return max(float(np.linalg.norm(p.center - self.center)) + p.radius() for p in self.parts)

    def intersect(self, ox, dx, dy):
        best = None
        for p in self.parts:
            t, n, u, v = p.intersect(ox, dx, dy)
            if best is None:
                best = [t, n, u, v]
                continue
            near = t < best[0]
            best = [np.where(near, t, best[0]), np.where(near[..., None], n, best[1]),
                    np.where(near, u, best[2]), np.where(near, v, best[3])]  # fmt: skip
        return tuple(best)


def _fence(rng, centre, R, slats, width, gap, extent, z) -> _Object:
    parts = []
    for i in range(slats):
        offset = R @ np.array([(i - (slats - 1) / 2) * width * gap, 0.0, 0.0])
        parts.append(s3.Box(centre + offset, R, np.array([width / 2, extent, width / 2])))
    if rng.random() < 0.7:  # a cross bar
        parts.append(s3.Box(centre, R, np.array([slats * width * gap / 2, width / 2, width / 2])))
    cam_f = extent  # texel scale below only needs a length
    return _texture_object(rng, _Union(parts), z, s3.Camera(cam_f, 0, 0), texel=width / 2)


def _texture_object(rng, shape: s3.Shape, z: float, cam: s3.Camera, texel: float | None = None) -> _Object:
    texel = texel or z / cam.f  # about one texel per pixel at the object's depth
    span = 2 * np.pi * shape.radius() if np.isfinite(shape.radius()) else 4.0 * z
    n = int(np.clip(span / texel, 16, 384))
    kind = str(rng.choice(TEXTURE_KINDS, p=_TEXTURE_WEIGHTS / _TEXTURE_WEIGHTS.sum()))
    tex = make_texture(rng, n, n, kind)
    texel = max(texel, span / n)
    specular = float(rng.uniform(0, 0.15)) if rng.random() < 0.5 else 0.0
    return _Object(shape, tex, texel, (-span / 2, -span / 2), specular, float(rng.uniform(8, 40)),
                   kind in ("flat", "weak"))  # fmt: skip


def _background(rng, cam: s3.Camera, h: int, w: int, d_bg: float) -> _Object:
    gy = rng.uniform(0, 0.5 * d_bg / h) if rng.random() < 0.6 else 0.0  # a floor: nearer at the bottom
    gx = rng.uniform(-0.3, 0.3) * d_bg / w
    d0 = d_bg + abs(gx) * w / 2 + 1e-3
    normal, c = s3.plane_from_disparity(cam, d0, gx, gy)
    z = cam.f * cam.baseline / d0
    texel = z / cam.f
    n = int(max(h, w) * 1.5)
    kind = str(rng.choice(TEXTURE_KINDS[:8]))  # the background is textured
    return _Object(s3.Plane(np.zeros(3), normal=normal, c=c), make_texture(rng, n, n, kind), texel,
                   (-n * texel / 2, -n * texel / 2), 0.0, 10.0, False)  # fmt: skip


def _bounds(obj: _Object, cam: s3.Camera, ox: float, h: int, w: int) -> tuple[int, int, int, int]:
    """Conservative pixel bounds (y0, y1, x0, x1) of an object in a view, from its bounding sphere."""
    r = obj.shape.radius()
    c = obj.shape.center
    if not np.isfinite(r) or c[2] - r <= 1e-3:
        return 0, h, 0, w
    zs = (c[2] - r, c[2] + r)
    xs = [cam.f * (c[0] - ox + sx * r) / z + cam.cx for sx in (-1, 1) for z in zs]
    ys = [cam.f * (c[1] + sy * r) / z + cam.cy for sy in (-1, 1) for z in zs]
    x0, x1 = max(0, int(np.floor(min(xs)))), min(w, int(np.ceil(max(xs))) + 1)
    y0, y1 = max(0, int(np.floor(min(ys)))), min(h, int(np.ceil(max(ys))) + 1)
    return y0, y1, x0, x1


def _sample(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup at k texel coordinates -> (k, 3); remap wants a 2-D map under 32767 wide."""
    k, cols = x.size, 1024
    rows = -(-k // cols)
    mx, my = np.zeros(rows * cols, np.float32), np.zeros(rows * cols, np.float32)
    mx[:k], my[:k] = x, y
    out = cv2.remap(texture, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT_101)  # fmt: skip
    return out.reshape(-1, 3)[:k]


def _render(objects: list[_Object], cam: s3.Camera, h: int, w: int, right: bool, light: np.ndarray):
    """One view: (RGB float32 (h, w, 3), disparity (h, w), textureless mask (h, w))."""
    ox = cam.origin_x(right)
    image = np.zeros((h, w, 3), np.float32)
    depth = np.full((h, w), np.inf)
    flat = np.zeros((h, w), bool)
    for obj in objects:
        y0, y1, x0, x1 = _bounds(obj, cam, ox, h, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dx, dy = cam.rays(xx, yy)
        t, n, u, v = obj.shape.intersect(ox, dx, dy)
        hit = np.isfinite(t) & (t < depth[y0:y1, x0:x1])
        if not hit.any():
            continue
        # Shade only the pixels this object wins: (k, 3) arrays.
        n, t = n[hit], t[hit]
        n = n / np.maximum(np.sqrt(np.einsum("ki,ki->k", n, n)), 1e-12)[:, None]
        view = -np.stack([dx[hit], dy[hit], np.ones_like(t)], -1)
        view /= np.sqrt(np.einsum("ki,ki->k", view, view))[:, None]
        n = np.where((np.einsum("ki,ki->k", n, view) < 0)[:, None], -n, n)  # face the camera
        albedo = _sample(obj.texture, (u[hit] - obj.uv0[0]) / obj.texel, (v[hit] - obj.uv0[1]) / obj.texel)
        diffuse = np.clip(n @ light, 0, 1)
        colour = albedo * (0.45 + 0.55 * diffuse)[:, None]
        if obj.specular:
            half = light + view
            half /= np.sqrt(np.einsum("ki,ki->k", half, half))[:, None]
            colour = colour + (obj.specular * np.clip(np.einsum("ki,ki->k", n, half), 0, 1) ** obj.shininess)[:, None]
        region = (slice(y0, y1), slice(x0, x1))
        image[region][hit] = colour
        depth[region][hit] = t
        flat[region][hit] = obj.textureless
    disp = (cam.f * cam.baseline / depth).astype(np.float32)
    return np.clip(image, 0, 1), disp, flat


def _appearance(rng: np.random.Generator, img: np.ndarray, gain: float, gamma: float, tint: np.ndarray) -> np.ndarray:
    return np.clip((np.clip(img * gain * tint, 0, 1)) ** gamma, 0, 1).astype(np.float32)


def render_pair(
    rng: np.random.Generator, height: int, width: int, max_disp: float, n_objects: int, shape: str | None = None
) -> dict[str, np.ndarray]:
    """One stereo pair: ``left``, ``right`` (clean, float RGB (H, W, 3) in [0, 1]), ``final_left``,
    ``final_right``, ``disp_left``, ``disp_right`` (float32 (H, W), pixels, positive) and
    ``textureless`` (bool (H, W), left view). ``shape`` forces every object to one of :data:`SHAPES`."""
    h, w = height, width
    cam = s3.Camera(f=1.1 * w, cx=(w - 1) / 2, cy=(h - 1) / 2)
    d_bg = float(rng.uniform(0.3, 0.12 * max_disp))  # far background near 0
    objects = [_background(rng, cam, h, w, d_bg)]
    objects += [_make_object(rng, cam, h, w, d_bg, max_disp, shape) for _ in range(n_objects)]
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.3), -1.0])  # from the camera's side
    light /= np.linalg.norm(light)
    left, disp_left, flat = _render(objects, cam, h, w, False, light)
    right, disp_right, _ = _render(objects, cam, h, w, True, light)
    # Global appearance (both views, both passes): keeps the clean pass photo-consistent.
    gain, gamma, tint = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.25), rng.uniform(0.9, 1.1, 3).astype(np.float32)
    left, right = (_appearance(rng, v, gain, gamma, tint) for v in (left, right))
    # Final pass: defocus, motion blur, per-view photometric differences and sensor noise.
    sigma = rng.uniform(0.3, 1.2)
    k = int(rng.integers(1, 4)) * 2 + 1
    motion = np.zeros((k, k), np.float32)
    angle = rng.uniform(0, np.pi)
    ex, ey = int(round(k / 2 * np.cos(angle))), int(round(k / 2 * np.sin(angle)))
    cv2.line(motion, (k // 2 - ex, k // 2 - ey), (k // 2 + ex, k // 2 + ey), 1.0, 1)
    motion /= motion.sum()
    final = []
    for v in (left, right):
        blurred = cv2.filter2D(cv2.GaussianBlur(v, (0, 0), sigma), -1, motion)
        g, gm, tn = rng.uniform(0.92, 1.08), rng.uniform(0.92, 1.08), rng.uniform(0.96, 1.04, 3).astype(np.float32)
        noisy = _appearance(rng, blurred, g, gm, tn) + rng.normal(0, rng.uniform(0.5, 2.5) / 255, v.shape)
        final.append(np.clip(noisy, 0, 1).astype(np.float32))
    return {
        "left": left,
        "right": right,
        "disp_left": disp_left,
        "disp_right": disp_right,
        "final_left": final[0],
        "final_right": final[1],
        "textureless": flat,
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


def _encode_png(rgb: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError("could not encode a PNG")
    return buf.tobytes()


def thumbnail(img: np.ndarray, size: int = 8) -> list[float]:
    """A coarse (size x size) area-mean of an image, rounded: a fingerprint that survives bit-level
    differences of encoders and SIMD paths but not a change of the generated content."""
    small = cv2.resize(np.asarray(img, np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return [round(float(v), 2) for v in np.asarray(small).ravel()]


def occluded_left(disp_left: np.ndarray, disp_right: np.ndarray) -> np.ndarray:
    """Left pixels whose surface point is hidden in the right view (or falls outside it)."""
    h, w = disp_left.shape
    xr = np.round(np.arange(w)[None, :] - disp_left).astype(int)
    inside = xr >= 0
    seen = disp_right[np.arange(h)[:, None], np.clip(xr, 0, w - 1)]
    return ~inside | (seen > disp_left + 0.5)


def _make_pair(job: tuple) -> dict:
    """Render pair ``index`` and write its files under ``tmp``; returns its statistics and file hashes."""
    tmp, index, (subset, seq, frame), seed, h, w, max_disp, objects, bins, fingerprint = job
    cv2.setNumThreads(1)
    rng = np.random.default_rng([seed, index])
    pair = render_pair(rng, h, w, max_disp, int(rng.integers(objects[0], objects[1] + 1)))
    base = Path(tmp) / subset
    files: dict[str, str] = {}
    thumbs: dict[str, list[float]] = {}
    for view in ("left", "right"):
        for folder, key in (("frames_cleanpass", view), ("frames_finalpass", f"final_{view}")):
            path = base / folder / seq / view / f"{frame}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = _encode_png(pair[key])
            path.write_bytes(data)
            files[path.relative_to(tmp).as_posix()] = hashlib.sha256(data).hexdigest()
            if fingerprint:
                thumbs[path.relative_to(tmp).as_posix()] = thumbnail(pair[key])
        pfm = base / "disparity" / seq / view / f"{frame}.pfm"
        pfm.parent.mkdir(parents=True, exist_ok=True)
        write_pfm(pfm, pair[f"disp_{view}"])
        files[pfm.relative_to(tmp).as_posix()] = hashlib.sha256(pfm.read_bytes()).hexdigest()
        if fingerprint:
            thumbs[pfm.relative_to(tmp).as_posix()] = thumbnail(pair[f"disp_{view}"])
    d = pair["disp_left"]
    return {
        "hist": np.histogram(d, bins=bins)[0].tolist(),
        "occluded": int(occluded_left(d, pair["disp_right"]).sum()),
        "textureless": int(pair["textureless"].sum()),
        "pixels": int(d.size),
        "files": files,
        "thumbnails": thumbs,
    }


def generate_sceneflow_sample(
    out: str | os.PathLike,
    height: int = 540,
    width: int = 960,
    train_pairs: int = 30,
    test_pairs: int = 10,
    seed: int = 0,
    max_disp: float | None = None,
    objects: tuple[int, int] = (5, 40),
    progress: bool = True,
    workers: int = 1,
    fingerprint_pairs: int = 0,
    replace: bool = False,
) -> dict:
    """Write generated pairs under ``out`` in the official Scene Flow layout (a); returns its manifest.

    ``train_pairs`` is spread over the three subsets (half FlyingThings3D TRAIN, a quarter each Driving
    and Monkaa); ``test_pairs`` go to FlyingThings3D TEST. Disparities reach about ``max_disp`` pixels
    (default 0.2 x width). Deterministic from ``seed``: pair i has its own generator seeded by
    (seed, i), so the output does not depend on ``workers`` (processes; 0 = all cores).

    The manifest (``sample.json``) holds the parameters, the SHA-256 of every file, and for the first
    ``fingerprint_pairs`` pairs coarse thumbnails (see :func:`thumbnail`); ``stats.json`` holds the
    disparity histogram and the shares of occluded and textureless pixels. The tree is built in a
    temporary sibling folder and renamed into place, so an interrupted run leaves nothing half-written.
    An existing ``out`` with the same parameters is reused as it is; a different generated sample there
    is replaced when ``replace`` is set (only folders holding this generator's ``sample.json``); anything
    else there is an error.
    """
    out = Path(out)
    if height < 32 or width < 64:
        raise ValueError(f"sample frames must be at least 32x64, got {height}x{width}")
    if train_pairs < 0 or test_pairs < 0 or train_pairs + test_pairs == 0:
        raise ValueError(f"need a positive number of pairs, got train={train_pairs} test={test_pairs}")
    if not 1 <= objects[0] <= objects[1]:
        raise ValueError(f"objects must be (min, max) with 1 <= min <= max, got {objects}")
    max_disp = float(max_disp if max_disp is not None else 0.2 * width)
    params = {
        "generator": "stereo.data.synthetic",
        "version": GENERATOR_VERSION,
        "height": height,
        "width": width,
        "train_pairs": train_pairs,
        "test_pairs": test_pairs,
        "seed": seed,
        "max_disp": max_disp,
        "objects": list(objects),
    }
    existing = _existing_sample(out, params, replace)
    if existing is not None:
        return existing
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    bins = np.linspace(0, max_disp, 17)
    try:
        items = _layout(train_pairs, test_pairs)
        jobs = [(str(tmp), i, it, seed, height, width, max_disp, objects, bins, i < fingerprint_pairs)
                for i, it in enumerate(items)]  # fmt: skip
        results = _run_jobs(jobs, workers or os.cpu_count() or 1, f"generating {out.name}", progress)
        stats = _statistics(results, bins)
        manifest = {
            "parameters": params,
            "files": {k: v for r in results for k, v in sorted(r["files"].items())},
            "thumbnails": {k: v for r in results for k, v in sorted(r["thumbnails"].items())},
        }
        (tmp / "sample.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _existing_sample(out: Path, params: dict, replace: bool) -> dict | None:
    """The manifest of an identical sample already in ``out`` (reuse it), or None once ``out`` is free."""
    marker = out / "sample.json"
    if not (out.exists() and any(out.iterdir())):
        return None
    old = json.loads(marker.read_text()) if marker.is_file() else {}
    if old.get("parameters") == params:
        return old
    ours = old.get("generator", old.get("parameters", {}).get("generator")) == "stereo.data.synthetic"
    if not (replace and ours):
        raise FileExistsError(
            f"{out} exists and is not an identical generated sample (see {marker}); choose another folder, "
            "remove it, or pass replace=true (generated samples only)"
        )
    shutil.rmtree(out)
    return None


def _run_jobs(jobs: list[tuple], workers: int, desc: str, progress: bool) -> list[dict]:
    """:func:`_make_pair` over every job, in order, in ``workers`` processes, with a progress bar."""
    bar = progress_bar(total=len(jobs), desc=desc, unit="pair", enabled=progress)
    results = []
    if workers == 1:
        for job in jobs:
            results.append(_make_pair(job))
            bar.update()
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for r in pool.imap(_make_pair, jobs, chunksize=4):
                results.append(r)
                bar.update()
    bar.close()
    return results


def _statistics(results: list[dict], bins: np.ndarray) -> dict:
    pixels = sum(r["pixels"] for r in results)
    hist = np.sum([r["hist"] for r in results], axis=0)
    return {
        "pairs": len(results),
        "occluded_share": sum(r["occluded"] for r in results) / pixels,
        "textureless_share": sum(r["textureless"] for r in results) / pixels,
        "disparity_histogram": {
            "bin_edges_px": [round(float(b), 2) for b in bins],
            "share": [round(float(c) / pixels, 5) for c in hist],
        },
    }


def format_statistics(stats: dict) -> str:
    """The statistics of :func:`generate_sceneflow_sample` as a few readable lines."""
    edges, share = stats["disparity_histogram"]["bin_edges_px"], stats["disparity_histogram"]["share"]
    rows = "\n".join(f"  {edges[i]:6.1f} .. {edges[i + 1]:6.1f} px  {100 * s:5.1f}%  {'#' * round(60 * s)}"
                     for i, s in enumerate(share))  # fmt: skip
    return (
        f"{stats['pairs']} pairs; occluded (left view) {100 * stats['occluded_share']:.1f}%, "
        f"textureless {100 * stats['textureless_share']:.1f}% of pixels\nleft disparity histogram:\n{rows}"
    )
