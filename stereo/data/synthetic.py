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
and final differ as in Scene Flow. Later versions change what a scene draws from (``_STYLES``: v3 and v4);
v5, v8 and v9 (benchmarks), v6, v7 and v10 (training data) are another renderer, photographs warped by known
disparity (:mod:`stereo.data.photowarp`; v5/v8/v9 the benchmark photographs, v6/v7/v10 the training ones; v7 adds
v2's final pass to v6's cameras; v8 renders v5's scenes at twice the views' resolution; v9 adds glossy surfaces;
v10 is v9 on the training photographs).

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
import signal
import sys
from dataclasses import dataclass
from dataclasses import replace as with_changes
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from stereo.data import scene3d as s3
from stereo.data.images import read_rgb
from stereo.data.occlusion import nonoccluded
from stereo.data.pfm import read_pfm, write_pfm
from stereo.data.photowarp import fits
from stereo.errors import ConfigError, DataError, MissingFileError
from stereo.progress import progress as progress_bar

GENERATOR_VERSION = 3  # what new samples use; benchmarks name theirs (generated-v1: 2)
GENERATOR_VERSIONS = (2, 3, 4, 5, 6, 7, 8, 9, 10)
TEXTURE_KINDS = ("clouds", "wood", "bricks", "spots", "grain", "stripes", "grid", "text", "flat", "weak")
_TEXTURE_WEIGHTS = np.array([12, 10, 9, 9, 10, 8, 7, 8, 6, 6], float)
SHAPES = ("ellipsoid", "cylinder", "box", "patch", "heightfield", "rod", "fence")
_SHAPE_WEIGHTS = np.array([16, 12, 18, 16, 8, 8, 5], float)


@dataclass(frozen=True)
class _Style:
    """What a generator version draws from (v2's values reproduce generated-v1 exactly)."""

    textures: tuple[str, ...]
    texture_weights: np.ndarray
    shapes: tuple[str, ...]
    shape_weights: np.ndarray
    rod_radius_px: tuple[float, float]
    specular: tuple[float, float, float]  # probability, max strength, max shininess
    background: tuple[str, ...]  # texture kinds of the background plane, drawn uniformly
    photo_set: str = "train"  # the photographs of photo textures and dead leaves (PHOTO_SETS)
    photo_scale: tuple[float, float] = (0.3, 1.6)  # photo pixels -> texels (> 1 enlarges the photograph)
    photo_blur: float = 0.6  # texels: the band limit of photo and dead-leaves textures
    supersample: int = 1  # rendered on an s x s grid per pixel and averaged (area integration)
    max_texels: int = 384  # per side of an object's texture: larger objects get larger texels
    # The photowarp renderer's (v5-v10; :func:`stereo.data.photowarp.render_photo_pair`):
    scene_scale: int = 1  # photograph pixels per view pixel (per side); the camera runs at the scene's size when > 1
    surface_gain: float = 0.0  # std of each surface's brightness change in the right view
    weak_share: float = 0.0  # share of surfaces with nearly no texture
    glossy_share: float = 0.0  # share of surfaces whose colour is in part a reflection


_STYLES = {
    2: _Style(
        TEXTURE_KINDS, _TEXTURE_WEIGHTS, SHAPES, _SHAPE_WEIGHTS, (0.5, 2.0), (0.5, 0.15, 40.0), TEXTURE_KINDS[:8]
    ),
    # v3: photographs and dead leaves beside the procedural textures; many more thin structures, down to
    # sub-pixel width; stronger highlights (they move between the views).
    3: _Style(
        (*TEXTURE_KINDS, "photo", "deadleaves"),
        np.array([8, 6, 6, 6, 7, 6, 5, 5, 4, 4, 30, 13], float),
        (*SHAPES, "spokes", "branches"),
        np.array([13, 9, 14, 13, 6, 12, 6, 6, 6], float),
        (0.3, 1.5),
        (0.6, 0.45, 80.0),
        (*TEXTURE_KINDS[:8], "photo", "photo", "deadleaves"),
    ),
    # v4 (a benchmark generator): layers of photographs that no training data uses, never enlarged, on slanted
    # and curved surfaces (mostly patches and height fields) in front of a photographed background, with thin
    # structures, clutter (many small bodies) and some flat, weak and grainy surfaces; rendered with 3 x 3
    # samples per pixel (edges and textures integrated over the pixel, as a sensor does; the ground truth is the
    # centre sample's, exact); the final pass is v3's camera model with the settings of one good camera.
    4: _Style(
        ("photo", "deadleaves", "flat", "weak", "grain"),
        np.array([70, 10, 5, 5, 10], float),
        (*SHAPES, "spokes", "branches", "clutter"),
        np.array([6, 4, 6, 30, 20, 8, 3, 2, 3, 30], float),
        (0.3, 1.5),
        (0.6, 0.45, 80.0),
        ("photo",),
        photo_set="benchmark",
        photo_scale=(0.4, 1.0),
        photo_blur=0.0,
        supersample=3,
        max_texels=768,
    ),
}
# v5 (a benchmark generator, :mod:`stereo.data.photowarp`): v4's photographs and camera, but the photograph is the
# scene: its own regions are the layers, warped by known disparity (objects = layers in front).
_STYLES[5] = _STYLES[4]
# v6 (training data for sub-pixel work): v5's renderer on the training photographs (v3's), so that the
# benchmark photographs of v4/v5 stay unseen; its final pass is v4's camera for half the pairs, v3's for the rest.
_STYLES[6] = with_changes(_STYLES[5], photo_set="train")
# v7 (training data for sub-pixel work): v6 with generator v2's final pass (strong defocus and motion blur, sensor
# noise) for a third of the pairs, so that a sub-pixel stage also sees images whose fine detail is gone.
_STYLES[7] = _STYLES[6]
# v8 (a benchmark generator towards real photographs' error profile, not there yet: docs/data.md): v5 with the
# photograph as a scene finer than the views (each view pixel integrates 2 x 2 photograph pixels, so the views are
# as sharp as a sensor's, and the camera model runs at the scene's size: a larger sensor's image, reduced),
# view-dependent brightness (5% per surface) and weak, nearly textureless surfaces (40% of them).
_STYLES[8] = with_changes(_STYLES[5], scene_scale=2, surface_gain=0.05, weak_share=0.4)
# v9 (a benchmark generator, generated-v3's): v8's scenes and camera with glossy surfaces (17.5% of them, the
# background included: part of their colour a reflection that slides over them between the views) instead of weak
# ones. The share is set by the validity check of docs/data.md (15% and 20% bracket the real pair's profile).
_STYLES[9] = with_changes(_STYLES[8], weak_share=0.0, glossy_share=0.175)
# v10 (training data for sub-pixel work): v9's renderer and camera (scene at twice the views' resolution,
# view-dependent brightness, glossy surfaces) on the training photographs, with v8's weak surfaces at half its
# share, so that a stage trained on it meets what v8/v9 measure without ever seeing their photographs.
_STYLES[10] = with_changes(_STYLES[9], photo_set="train", weak_share=0.2)


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


def make_texture(
    rng: np.random.Generator, h: int, w: int, kind: str | None = None, style: _Style = _STYLES[3]
) -> np.ndarray:
    """An RGB texture in [0, 1], shape (h, w, 3), of one of :data:`TEXTURE_KINDS`, ``photo`` or
    ``deadleaves`` (random of the first if None); those two from the style's photographs.

    Every procedural texture is band-limited (Gaussian, sigma 0.8 texel) so that sampling it twice (render,
    then warp) does not alias; photographs and dead leaves by ``style.photo_blur`` (v4: none, as its
    renderer integrates over each pixel).
    """
    kind = kind or str(rng.choice(TEXTURE_KINDS, p=_TEXTURE_WEIGHTS / _TEXTURE_WEIGHTS.sum()))
    if kind in ("photo", "deadleaves"):
        tex = photo_texture(rng, h, w, style) if kind == "photo" else dead_leaves(rng, h, w, style)
        return cv2.GaussianBlur(tex, (0, 0), style.photo_blur) if style.photo_blur else tex
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


# ---- natural textures (generator v3) -------------------------------------------------------------------

# Photographs that ship inside scikit-image (skimage/data): the training generator's (v3). Its stereo pair
# (motorcycle_*) is held out for an evaluation outside the project and is never used, here or anywhere.
PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png",
          "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "page.png", "retina.jpg",
          "rocket.jpg", "text.png", "microaneurysms.png")  # fmt: skip
# Photographs that no training data uses, for benchmarks only (generator v4): (package, file in it).
BENCHMARK_PHOTOS = (
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("pywt", "data/ascent.npz"),
    ("pywt", "data/aero.npz"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
PHOTO_SETS = {"train": tuple(("skimage", f"data/{name}") for name in PHOTOS), "benchmark": BENCHMARK_PHOTOS}
_PHOTO_CACHE: dict[str, list[np.ndarray]] = {}


def photo_sources(version: int) -> dict[str, object] | None:
    """Which photographs generator ``version`` draws from, for a benchmark's manifest: the set's name, its
    files (package/path) and the files of the other set, which it never uses; None for the procedural
    versions (2)."""
    if version < 3:
        return None
    used = _STYLES[version].photo_set
    (other,) = set(PHOTO_SETS) - {used}
    return {"set": used, "files": [f"{pkg}/{rel}" for pkg, rel in PHOTO_SETS[used]],
            "never_used": {other: [f"{pkg}/{rel}" for pkg, rel in PHOTO_SETS[other]]}}  # fmt: skip


def _package_file(package: str, rel: str) -> Path:
    """A data file inside an installed package, found without importing it; a clear error when missing."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip = {"skimage": "scikit-image", "sklearn": "scikit-learn", "pywt": "PyWavelets"}.get(package, package)
        raise MissingFileError(
            f"the generator's photographs come from {package}: pip install {pip} (or pip install -e .[generate])"
        )
    return Path(next(iter(spec.submodule_search_locations))) / rel


def photo_folder() -> Path:
    """scikit-image's data folder (the photographs of :data:`PHOTOS`); a clear error when it is missing."""
    return _package_file("skimage", "data")


def photos(photo_set: str = "train") -> list[np.ndarray]:
    """The photographs of ``photo_set`` (:data:`PHOTO_SETS`) as float32 RGB in [0, 1], loaded once per
    process (grey ones replicated to RGB)."""
    if photo_set not in _PHOTO_CACHE:
        loaded = []
        for package, rel in PHOTO_SETS[photo_set]:
            assert "motorcycle" not in rel  # reserved: see above
            path = _package_file(package, rel)
            try:
                if path.suffix == ".npz":
                    with np.load(path) as z:
                        img = np.asarray(z["data"], np.float32) / 255
                else:  # PIL, not OpenCV: libpng warns about one file's colour profile on every load
                    with Image.open(path) as im:
                        img = np.asarray(im.convert("RGB"), np.float32) / 255
            except (OSError, KeyError, ValueError) as e:
                raise MissingFileError(f"{path}: texture photograph missing or unreadable ({e})") from e
            loaded.append(np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img)
        _PHOTO_CACHE[photo_set] = loaded
    return _PHOTO_CACHE[photo_set]


def photo_texture(rng: np.random.Generator, h: int, w: int, style: _Style = _STYLES[3]) -> np.ndarray:
    """A patch of a photograph of the style's set, randomly scaled (``style.photo_scale``), rotated, flipped
    and recoloured: (h, w, 3)."""
    pool = photos(style.photo_set)
    src = pool[int(rng.integers(len(pool)))]
    lo, hi = style.photo_scale
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    angle = float(rng.uniform(0, 360))
    sh, sw = src.shape[:2]
    cy, cx = rng.uniform(0.25, 0.75) * sh, rng.uniform(0.25, 0.75) * sw
    if style.photo_scale[1] <= 1:  # v4: shrink by area first (warpAffine has no area filter), then rotate
        src = cv2.resize(src, (max(1, round(sw * scale)), max(1, round(sh * scale))), interpolation=cv2.INTER_AREA)
        cy, cx, scale = cy * src.shape[0] / sh, cx * src.shape[1] / sw, 1.0
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += (w / 2 - cx, h / 2 - cy)
    tex = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)  # fmt: skip
    if rng.random() < 0.5:
        tex = tex[:, ::-1]
    grey = float(np.abs(src[..., 0] - src[..., 1]).max()) < 1e-3
    mix = np.eye(3, dtype=np.float32) + rng.normal(0, 0.15, (3, 3)).astype(np.float32)
    if grey or rng.random() < 0.25:  # colourise grey photographs, recolour some others
        mix = rng.permutation(np.eye(3, dtype=np.float32)) * 0.4 + rng.random((3, 3)).astype(np.float32) * 0.4
    tex = np.einsum("hwc,dc->hwd", np.ascontiguousarray(tex), mix)
    lo, hi = np.percentile(tex, (1, 99))
    tex = (tex - lo) / max(hi - lo, 1e-3) * rng.uniform(0.6, 1.0) + rng.uniform(0.0, 0.2)
    return np.clip(tex, 0, 1).astype(np.float32) ** float(rng.uniform(0.7, 1.4))


def dead_leaves(rng: np.random.Generator, h: int, w: int, style: _Style = _STYLES[3]) -> np.ndarray:
    """Dead leaves: occluding discs with radii ~ r^-3 (scale invariant, a 1/f-like spectrum): (h, w, 3).
    Colours come from a photograph or a random palette, some discs carry fine noise."""
    rmin, rmax = 1.0, max(h, w) / 3
    n = int(min(12000, 3 * h * w / (np.pi * rmin * rmax) + 50))
    u = rng.random(n)
    radii = 1.0 / np.sqrt(u * (rmin**-2 - rmax**-2) + rmax**-2)  # inverse CDF of p(r) ~ r^-3
    if rng.random() < 0.5:
        pool = photos(style.photo_set)
        src = pool[int(rng.integers(len(pool)))]
        ys, xs = rng.integers(0, src.shape[0], n), rng.integers(0, src.shape[1], n)
        colours = src[ys, xs]
    else:
        colours = _palette(rng, rng.random((1, n)).astype(np.float32), k=4)[0]
    tex = np.zeros((h, w, 3), np.float32)
    xs, ys = rng.uniform(-rmax / 2, w + rmax / 2, n), rng.uniform(-rmax / 2, h + rmax / 2, n)
    for i in np.argsort(-radii, kind="stable"):  # large discs first, small ones on top
        cv2.circle(tex, (int(xs[i]), int(ys[i])), max(1, int(radii[i])), colours[i].tolist(), -1, cv2.LINE_AA)
    return np.clip(tex + 0.03 * (_noise(rng, h, w, octaves=2, base=max(8, w // 6))[..., None] - 0.5), 0, 1)


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
    rng: np.random.Generator,
    cam: s3.Camera,
    h: int,
    w: int,
    d_bg: float,
    max_disp: float,
    kind: str | None = None,
    style: _Style = _STYLES[2],
) -> _Object:
    kind = kind or str(rng.choice(style.shapes, p=style.shape_weights / style.shape_weights.sum()))
    d = _sample_disparity(rng, d_bg + 0.05 * max_disp, max_disp)  # of the object's nearest point
    thin = ("rod", "fence", "spokes", "branches")
    size_px = float(rng.uniform(0.08, 0.45) * min(h, w) * (1.6 if kind in thin else 1.0))
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
    elif kind == "rod":  # thin structures: wires and poles (v2: 1-4 px thick, v3: 0.6-3 px)
        thick = rng.uniform(*style.rod_radius_px) * z / cam.f
        shape = s3.Cylinder(centre, R, float(thick), float(extent))
    elif kind == "spokes":  # a wheel: thin spokes from a hub to a rim of short segments
        shape = _wheel(rng, centre, s3.rotation(rng, max_angle=0.9), extent, z / cam.f, style)
    elif kind == "branches":  # a branching tree of thinning cylinders
        shape = _branches(rng, centre, extent, z / cam.f, style)
    elif kind == "clutter":  # many small bodies a few pixels of disparity apart (leaves, stones, small items)
        shape = _clutter(rng, cam, centre, extent, d)
    else:  # fence: parallel thin slats, a box each, sharing one orientation
        R = s3.rotation(rng, max_angle=0.6)
        slats, gap = int(rng.integers(4, 10)), rng.uniform(2.0, 5.0)
        width = extent / (slats * gap)
        return _fence(rng, centre, R, slats, width, gap, extent, z, style)
    return _texture_object(rng, shape, z, cam, style=style)


def _along(axis: np.ndarray) -> np.ndarray:
    """A rotation whose local z axis is ``axis`` (a cylinder's axis)."""
    a = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b = np.cross(a, helper)
    b /= np.linalg.norm(b)
    return np.stack([b, np.cross(a, b), a], axis=1)


def _segment(p0: np.ndarray, p1: np.ndarray, radius: float) -> s3.Cylinder:
    return s3.Cylinder((p0 + p1) / 2, _along(p1 - p0), float(radius), float(np.linalg.norm(p1 - p0) / 2))


def _wheel(rng, centre, R, extent, px, style) -> _Union:
    """Spokes (6-24) and a rim (24-40 segments) in the wheel's plane, radius ``extent``; ``px`` = one
    pixel in world units at the wheel's depth."""
    spokes, rim = int(rng.integers(6, 25)), int(rng.integers(24, 41))
    r_spoke = rng.uniform(*style.rod_radius_px) * px
    r_rim = rng.uniform(1.0, 3.0) * px
    pt = lambda a, r: centre + R @ np.array([r * np.cos(a), r * np.sin(a), 0.0])  # noqa: E731
    parts: list[s3.Shape] = [s3.Cylinder(centre, R, float(extent * 0.12), float(extent * 0.08))]  # the hub
    phase = rng.uniform(0, 2 * np.pi)
    parts += [_segment(pt(phase + 2 * np.pi * i / spokes, extent * 0.1), pt(phase + 2 * np.pi * i / spokes, extent),
                       r_spoke) for i in range(spokes)]  # fmt: skip
    parts += [_segment(pt(2 * np.pi * i / rim, extent), pt(2 * np.pi * (i + 1) / rim, extent), r_rim)
              for i in range(rim)]  # fmt: skip
    return _Union(parts)


def _branches(rng, centre, extent, px, style) -> _Union:
    """A trunk that forks 3-4 times, each level thinner (down to the thinnest rods) and shorter."""
    levels = int(rng.integers(3, 5))
    r0 = rng.uniform(1.5, 4.0) * px
    r_min = style.rod_radius_px[0] * px
    direction = np.array([rng.uniform(-0.4, 0.4), -1.0, rng.uniform(-0.3, 0.3)])
    start = centre - direction / np.linalg.norm(direction) * extent * 0.5
    parts: list[s3.Shape] = []
    tips = [(start, direction / np.linalg.norm(direction), extent * 0.55, r0)]
    for level in range(levels):
        nxt = []
        for p, d, length, r in tips:
            end = p + d * length
            parts.append(_segment(p, end, max(r, r_min)))
            if level < levels - 1:
                for _ in range(int(rng.integers(2, 4))):
                    nd = d + rng.normal(0, 0.6, 3)
                    nxt.append((end, nd / np.linalg.norm(nd), length * rng.uniform(0.5, 0.8), r * 0.6))
        tips = nxt
    return _Union(parts)


def _clutter(rng, cam: s3.Camera, centre: np.ndarray, extent: float, d: float) -> _Union:
    """20-60 small ellipsoids (2-10 px across) in a disc of radius ``extent`` around ``centre``, each at its
    own depth within 0-4 px of disparity behind the nearest, ``d``: structure a few pixels wide and deep."""
    parts: list[s3.Shape] = []
    for _ in range(int(rng.integers(20, 61))):
        di = max(d - float(rng.uniform(0, 4)), 0.5)
        z = cam.f * cam.baseline / di
        r_px = float(rng.uniform(1.0, 5.0))
        a, rad = rng.uniform(0, 2 * np.pi), extent * np.sqrt(rng.random())
        # The centre's direction at depth z, offset in the disc (scaled to this depth).
        c = centre / centre[2] * z + np.array([rad * np.cos(a), rad * np.sin(a), 0.0]) * z / centre[2]
        radii = r_px * z / cam.f * rng.uniform(0.6, 1.4, 3)
        parts.append(s3.Ellipsoid(c, s3.rotation(rng), radii))
    return _Union(parts)


class _Union(s3.Shape):
    """Several shapes rendered as one object (a fence)."""

    def __init__(self, parts: list[s3.Shape]) -> None:
        super().__init__(np.mean([p.center for p in parts], 0))
        self.parts = parts

    def radius(self) -> float:
        return max(float(np.linalg.norm(p.center - self.center)) + p.radius() for p in self.parts)

    def intersect(self, ox, dx, dy):
        # Each part is intersected only with the rays inside its own bounding window (a wheel's spoke
        # covers a sliver of the wheel's box); the result is the same, pixel for pixel.
        t = np.full(dx.shape, np.inf)
        n, u, v = np.zeros(dx.shape + (3,)), np.zeros(dx.shape), np.zeros(dx.shape)
        for p in self.parts:
            window = _ray_window(p, ox, dx, dy)
            if window is None:
                continue
            pt, pn, pu, pv = p.intersect(ox, dx[window], dy[window])
            near = pt < t[window]
            t[window] = np.where(near, pt, t[window])
            n[window] = np.where(near[..., None], pn, n[window])
            u[window] = np.where(near, pu, u[window])
            v[window] = np.where(near, pv, v[window])
        return t, n, u, v


def _ray_window(shape: s3.Shape, ox: float, dx: np.ndarray, dy: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest block of the ray grid (dx, dy) that holds every ray which can meet ``shape`` (from its
    bounding sphere, conservatively); None when none can."""
    r, c = shape.radius(), shape.center
    if not np.isfinite(r) or c[2] - r <= 1e-3 or dx.ndim != 2:
        return (slice(None),) * dx.ndim
    zs = (c[2] - r, c[2] + r)
    xs = [(c[0] - ox + sx * r) / z for sx in (-1, 1) for z in zs]
    ys = [(c[1] + sy * r) / z for sy in (-1, 1) for z in zs]
    inside = (dx >= min(xs)) & (dx <= max(xs)) & (dy >= min(ys)) & (dy <= max(ys))
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _fence(rng, centre, R, slats, width, gap, extent, z, style: _Style = _STYLES[2]) -> _Object:
    parts = []
    for i in range(slats):
        offset = R @ np.array([(i - (slats - 1) / 2) * width * gap, 0.0, 0.0])
        parts.append(s3.Box(centre + offset, R, np.array([width / 2, extent, width / 2])))
    if rng.random() < 0.7:  # a cross bar
        parts.append(s3.Box(centre, R, np.array([slats * width * gap / 2, width / 2, width / 2])))
    cam_f = extent  # texel scale below only needs a length
    return _texture_object(rng, _Union(parts), z, s3.Camera(cam_f, 0, 0), texel=width / 2, style=style)


def _texture_object(
    rng, shape: s3.Shape, z: float, cam: s3.Camera, texel: float | None = None, style: _Style = _STYLES[2]
) -> _Object:
    texel = texel or z / cam.f  # about one texel per pixel at the object's depth
    span = 2 * np.pi * shape.radius() if np.isfinite(shape.radius()) else 4.0 * z
    n = int(np.clip(span / texel, 16, style.max_texels))
    kind = str(rng.choice(style.textures, p=style.texture_weights / style.texture_weights.sum()))
    tex = make_texture(rng, n, n, kind, style)
    texel = max(texel, span / n)
    p_spec, max_spec, max_shine = style.specular
    specular = float(rng.uniform(0, max_spec)) if rng.random() < p_spec else 0.0
    return _Object(shape, tex, texel, (-span / 2, -span / 2), specular, float(rng.uniform(8, max_shine)),
                   kind in ("flat", "weak"))  # fmt: skip


def _background(rng, cam: s3.Camera, h: int, w: int, d_bg: float, style: _Style = _STYLES[2]) -> _Object:
    gy = rng.uniform(0, 0.5 * d_bg / h) if rng.random() < 0.6 else 0.0  # a floor: nearer at the bottom
    gx = rng.uniform(-0.3, 0.3) * d_bg / w
    d0 = d_bg + abs(gx) * w / 2 + 1e-3
    normal, c = s3.plane_from_disparity(cam, d0, gx, gy)
    z = cam.f * cam.baseline / d0
    texel = z / cam.f
    n = int(max(h, w) * 1.5)
    kind = str(rng.choice(style.background))  # the background is textured
    return _Object(s3.Plane(np.zeros(3), normal=normal, c=c), make_texture(rng, n, n, kind, style), texel,
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
        diffuse = np.clip(s3.mm(n, light), 0, 1)
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


def _render_view(
    objects: list[_Object], cam: s3.Camera, h: int, w: int, right: bool, light: np.ndarray, supersample: int
):
    """:func:`_render` of the (h, w) view of ``cam``; with ``supersample`` s > 1, rendered on an s x s grid
    of samples per pixel (a camera of focal s f whose centre sample of each block is the pixel's centre) and
    area-averaged: every edge and texture is integrated over the pixel. The disparity and the textureless
    mask are the centre sample's: the ground truth of the pixel centre, exact."""
    if supersample == 1:
        return _render(objects, cam, h, w, right, light)
    s = supersample
    fine = s3.Camera(cam.f * s, cam.cx * s + (s - 1) / 2, cam.cy * s + (s - 1) / 2, cam.baseline)
    image, disp, flat = _render(objects, fine, h * s, w * s, right, light)
    c = (s - 1) // 2  # s odd: the centre sample
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image, np.ascontiguousarray(disp[c::s, c::s]) / np.float32(s), np.ascontiguousarray(flat[c::s, c::s])


def _appearance(rng: np.random.Generator, img: np.ndarray, gain: float, gamma: float, tint: np.ndarray) -> np.ndarray:
    return np.clip((np.clip(img * gain * tint, 0, 1)) ** gamma, 0, 1).astype(np.float32)


def render_pair(
    rng: np.random.Generator,
    height: int,
    width: int,
    max_disp: float,
    n_objects: int,
    shape: str | None = None,
    version: int = 2,
) -> dict[str, np.ndarray]:
    """One stereo pair: ``left``, ``right`` (clean, float RGB (H, W, 3) in [0, 1]), ``final_left``,
    ``final_right``, ``disp_left``, ``disp_right`` (float32 (H, W), pixels, positive) and
    ``textureless`` (bool (H, W), left view). ``shape`` forces every object to one of the version's
    shapes; ``version`` is the generator version (2 to 10, see the module docstring)."""
    if version not in _STYLES:
        raise ValueError(f"generator version {version} does not exist; expected one of {GENERATOR_VERSIONS}")
    style = _STYLES[version]
    h, w = height, width
    if version >= 5:
        from stereo.data.photowarp import render_photo_pair

        camera = None
        if style.scene_scale > 1:
            camera = lambda left, right: _rig(rng, *_camera_pair(rng, left, right))  # noqa: E731
        pair = render_photo_pair(rng, photos(style.photo_set), h, w, max_disp, n_objects, style.supersample,
                                 scale=style.scene_scale, gain_std=style.surface_gain or None,
                                 weak_share=style.weak_share, glossy_share=style.glossy_share,
                                 camera=camera)  # fmt: skip
        if camera is not None:
            return pair
        if version == 7 and rng.random() < 1 / 3:  # training data: v2's blur and noise for a third of the pairs
            blurred = _blur_and_noise(rng, pair["left"], pair["right"])
            return {**pair, "final_left": blurred[0], "final_right": blurred[1]}
        optics = _camera_pair(rng, pair["left"], pair["right"])
        if version >= 6 and rng.random() < 0.5:  # training data: v3's noisier camera for half the (other) pairs
            final = [_camera(v, np.random.default_rng(rng.integers(2**63))) for v in optics]
        else:
            final = _rig(rng, *optics)
        return {**pair, "final_left": final[0], "final_right": final[1]}
    cam = s3.Camera(f=1.1 * w, cx=(w - 1) / 2, cy=(h - 1) / 2)
    d_bg = float(rng.uniform(0.3, 0.12 * max_disp))  # far background near 0
    objects = [_background(rng, cam, h, w, d_bg, style)]
    objects += [_make_object(rng, cam, h, w, d_bg, max_disp, shape, style) for _ in range(n_objects)]
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.3), -1.0])  # from the camera's side
    light /= np.linalg.norm(light)
    with s3.explicit_products(version >= 4):
        left, disp_left, flat = _render_view(objects, cam, h, w, False, light, style.supersample)
        right, disp_right, _ = _render_view(objects, cam, h, w, True, light, style.supersample)
    # Global appearance (both views, both passes): keeps the clean pass photo-consistent.
    gain, gamma, tint = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.25), rng.uniform(0.9, 1.1, 3).astype(np.float32)
    left, right = (_appearance(rng, v, gain, gamma, tint) for v in (left, right))
    if version >= 4:
        final = _rig(rng, *_camera_pair(rng, left, right))
        return {"left": left, "right": right, "disp_left": disp_left, "disp_right": disp_right,
                "final_left": final[0], "final_right": final[1], "textureless": flat}  # fmt: skip
    if version >= 3:
        final = [_camera(v, np.random.default_rng(rng.integers(2**63))) for v in _camera_pair(rng, left, right)]
        return {"left": left, "right": right, "disp_left": disp_left, "disp_right": disp_right,
                "final_left": final[0], "final_right": final[1], "textureless": flat}  # fmt: skip
    final = _blur_and_noise(rng, left, right)
    return {
        "left": left,
        "right": right,
        "disp_left": disp_left,
        "disp_right": disp_right,
        "final_left": final[0],
        "final_right": final[1],
        "textureless": flat,
    }


def _blur_and_noise(rng: np.random.Generator, left: np.ndarray, right: np.ndarray) -> list[np.ndarray]:
    """Generator v2's final pass (generated-v1's): defocus (sigma 0.3-1.2 px) and a motion blur of 3-7 px at
    any angle, shared by both views, then per-view gain/gamma/colour differences and sensor noise."""
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
    return final


def _camera_pair(rng: np.random.Generator, left: np.ndarray, right: np.ndarray) -> list[np.ndarray]:
    """Generator v3's optics, shared by both views (one lens design): a light defocus calibrated to
    photographs' spectra (slope -2.2..-2.9, see :func:`spectral_slope`), rarely a short motion blur."""
    sigma = float(rng.uniform(0.0, 0.6))
    out = []
    for v in (left, right):
        if sigma > 0.15:
            v = cv2.GaussianBlur(v, (0, 0), sigma)
        out.append(v)
    if rng.random() < 0.15:  # a short motion blur, horizontal or vertical
        motion = np.zeros((3, 3), np.float32)
        if rng.random() < 0.5:
            motion[1, :] = 1 / 3
        else:
            motion[:, 1] = 1 / 3
        out = [cv2.filter2D(v, -1, motion) for v in out]
    return out


def _camera(img: np.ndarray, view_rng: np.random.Generator) -> np.ndarray:
    """Generator v3's sensor and pipeline, drawn per view: exposure and white balance that differ between
    the views, vignetting, shot and read noise, gamma, then JPEG compression (quality 60-97)."""
    h, w = img.shape[:2]
    gain = float(view_rng.uniform(0.8, 1.2))
    wb = view_rng.uniform(0.93, 1.07, 3).astype(np.float32)
    vignette = 1 - float(view_rng.uniform(0, 0.35)) * _radius2(h, w)
    linear = np.clip(img, 0, 1) ** 2.2 * gain * wb * vignette[..., None]
    shot, read = float(view_rng.uniform(0.0005, 0.006)), float(view_rng.uniform(0.0005, 0.004))
    noisy = _sensor_noise(linear, view_rng, shot, read)
    out = np.clip(noisy, 0, 1) ** (1 / float(view_rng.uniform(2.0, 2.4)))
    return _jpeg(out.astype(np.float32), int(view_rng.integers(60, 98)))


def _radius2(h: int, w: int) -> np.ndarray:
    """(h, w) squared distance from the image centre over a quarter of the squared diagonal: the falloff
    of the camera models' vignetting."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.25 * (w * w + h * h))


def _sensor_noise(linear: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """``linear`` light plus shot noise (variance ``shot`` x signal) and read noise (sigma ``read``)."""
    return linear + rng.normal(0, 1, linear.shape).astype(np.float32) * np.sqrt(
        shot * np.clip(linear, 0, None) + read**2
    )


def _rig(rng: np.random.Generator, left: np.ndarray, right: np.ndarray) -> list[np.ndarray]:
    """Generator v4's sensor and pipeline: v3's model (:func:`_camera`) with the settings of one good camera
    for both views, as in a calibrated rig. Shared: vignetting and gamma; per view: exposure within 3%,
    white balance within 2%, and shot and read noise a tenth of v3's (independent per view); JPEG at
    quality 90-98 for half the pairs, lossless otherwise."""
    vignette = (1 - float(rng.uniform(0, 0.35)) * _radius2(*left.shape[:2]))[..., None]
    gamma = float(rng.uniform(2.0, 2.4))
    quality = int(rng.integers(90, 99)) if rng.random() < 0.5 else None
    out = []
    for img in (left, right):
        gain, wb = float(rng.uniform(0.97, 1.03)), rng.uniform(0.98, 1.02, 3).astype(np.float32)
        linear = np.clip(img, 0, 1) ** 2.2 * gain * wb * vignette
        shot, read = float(rng.uniform(0.00005, 0.0006)), float(rng.uniform(0.00005, 0.0004))
        view = np.clip(_sensor_noise(linear, rng, shot, read), 0, 1) ** (1 / gamma)
        out.append(_jpeg(view.astype(np.float32), quality) if quality else np.round(view * 255) / 255)
    return [v.astype(np.float32) for v in out]


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` (RGB float in [0, 1]) through JPEG at ``quality``."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)  # JPEG's chroma planes assume BGR order
    code = np.clip(bgr * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", code, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError("could not encode a JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def spectral_slope(img: np.ndarray, lo: float = 0.02, hi: float = 0.25) -> float:
    """Slope of the radially averaged power spectrum in log-log between ``lo`` and ``hi`` cycles/px
    (grey, Hann window): about -2.4 to -2.7 for photographs, steeper for blurrier images."""
    grey = np.asarray(img, np.float64)
    grey = grey.mean(-1) if grey.ndim == 3 else grey
    h, w = grey.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2((grey - grey.mean()) * win)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    f = np.sqrt(fx**2 + fy**2).ravel()
    bins = np.geomspace(lo, hi, 16)
    idx = np.digitize(f, bins)
    p = power.ravel()
    centres, means = [], []
    for i in range(1, len(bins)):
        sel = idx == i
        if sel.any():
            centres.append(np.sqrt(bins[i - 1] * bins[i]))
            means.append(p[sel].mean())
    return float(np.polyfit(np.log(centres), np.log(np.maximum(means, 1e-30)), 1)[0])


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


# How far a reused sample's first pair may be from this code's render of it: at most `share` of the values
# off by more than `levels` grey levels (images) or `pixels` px (disparities). SIMD paths of other CPUs move
# a few values by a level; a changed generator (scene, noise, camera) moves most of them.
CONTENT_TOLERANCE = {"levels": 2, "pixels": 0.01, "share": 0.005}


def thumbnail(img: np.ndarray, size: int = 8) -> list[float]:
    """A coarse (size x size) area-mean of an image, rounded: a fingerprint that survives bit-level
    differences of encoders and SIMD paths but not a change of the generated content."""
    small = cv2.resize(np.asarray(img, np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return [round(float(v), 2) for v in np.asarray(small).ravel()]


def _render_index(seed: int, index: int, h: int, w: int, max_disp: float, objects: tuple[int, int] | list[int],
                  version: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Pair ``index`` of the sample of ``seed``: its own generator, seeded by (seed, index)."""
    rng = np.random.default_rng([seed, index])
    return render_pair(rng, h, w, max_disp, int(rng.integers(objects[0], objects[1] + 1)), version=version)


def _make_pair(job: tuple) -> dict:
    """Render pair ``index`` and write its files under ``tmp``; returns its statistics and file hashes."""
    tmp, index, (subset, seq, frame), seed, h, w, max_disp, objects, bins, fingerprint, version = job
    cv2.setNumThreads(1)
    pair = _render_index(seed, index, h, w, max_disp, objects, version)
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
        "occluded": int((~nonoccluded(d, pair["disp_right"])).sum()),  # what data.region=nonocc leaves out
        "textureless": int(pair["textureless"].sum()),
        "pixels": int(d.size),
        "slopes": [spectral_slope(pair["left"]), spectral_slope(pair["final_left"])],
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
    version: int = GENERATOR_VERSION,
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
    An existing ``out`` with the same parameters is reused as it is when its first pair is what this code
    renders (:func:`_content_changed`; otherwise it is refused, or made again when ``replace`` is set); a
    different generated sample there is replaced when ``replace`` is set (only folders holding this
    generator's ``sample.json``); anything else there is an error.
    """
    out = Path(out)
    _check_sample_arguments(height, width, train_pairs, test_pairs, objects, version)
    max_disp = float(max_disp if max_disp is not None else 0.2 * width)
    params = {
        "generator": "stereo.data.synthetic",
        "version": version,
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
    return _write_sample(out, params, objects, fingerprint_pairs, workers, progress)


def _write_sample(out: Path, params: dict, objects: tuple[int, int], fingerprint_pairs: int, workers: int,
                  progress: bool) -> dict:  # fmt: skip
    """Generate the pairs of ``params`` in a temporary sibling folder and rename it to ``out``."""
    height, width, seed, version = params["height"], params["width"], params["seed"], params["version"]
    max_disp, train_pairs, test_pairs = params["max_disp"], params["train_pairs"], params["test_pairs"]
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    bins = np.linspace(0, max_disp, 17)
    try:
        items = _layout(train_pairs, test_pairs)
        jobs = [(str(tmp), i, it, seed, height, width, max_disp, objects, bins, i < fingerprint_pairs, version)
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
            out.rmdir()  # empty (_existing_sample checked it)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _check_sample_arguments(
    height: int, width: int, train_pairs: int, test_pairs: int, objects: tuple[int, int], version: int
) -> None:
    """Refuse arguments that cannot make a sample, before any folder is made."""
    if height < 32 or width < 64:
        raise ConfigError(f"sample frames must be at least 32x64, got {height}x{width}")
    if train_pairs < 0 or test_pairs < 0 or train_pairs + test_pairs == 0:
        raise ConfigError(f"need a positive number of pairs, got train={train_pairs} test={test_pairs}")
    if not 1 <= objects[0] <= objects[1]:
        raise ConfigError(f"objects must be (min, max) with 1 <= min <= max, got {objects}")
    if version not in GENERATOR_VERSIONS:
        raise ConfigError(f"version={version}: expected one of {', '.join(map(str, GENERATOR_VERSIONS))}")
    if version >= 3:
        pool = photos(_STYLES[version].photo_set)  # a missing texture source stops here
        k = _STYLES[version].scene_scale
        if version >= 5 and not any(fits(p, height * k, width * k) for p in pool):
            sizes = ", ".join(sorted({f"{max(p.shape[:2])}x{min(p.shape[:2])}" for p in pool}))
            per_pixel = f" ({k} x {k} photograph pixels a pixel: {height * k}x{width * k})" if k > 1 else ""
            example = "height=200 width=296" if k > 1 else "height=272 width=480"
            raise ConfigError(
                f"version={version} crops its photographs, never enlarging them: {height}x{width}{per_pixel} fits "
                f"none of them (sizes {sizes}, any orientation); use e.g. {example}"
            )


def _existing_sample(out: Path, params: dict, replace: bool) -> dict | None:
    """The manifest of an identical sample already in ``out`` (reuse it), or None once ``out`` is free."""
    marker = out / "sample.json"
    if not (out.exists() and any(out.iterdir())):
        return None
    old = json.loads(marker.read_text()) if marker.is_file() else {}
    if old.get("parameters") == params:
        changed = _content_changed(out, params)
        if changed is None:
            return old
        if not replace:
            raise FileExistsError(
                f"{out} holds a sample with these parameters, made by another version of the generator's code: "
                f"{changed}. Pass replace=true to make it again with this code, or choose another folder"
            )
        shutil.rmtree(out)
        return None
    ours = old.get("generator", old.get("parameters", {}).get("generator")) == "stereo.data.synthetic"
    if not (replace and ours):
        raise FileExistsError(
            f"{out} exists and is not an identical generated sample (see {marker}); choose another folder, "
            "remove it, or pass replace=true (generated samples only)"
        )
    shutil.rmtree(out)
    return None


def _content_changed(out: Path, params: dict) -> str | None:
    """Why the sample in ``out`` is not what this code makes from ``params`` (None when it is): pair 0 is
    rendered again and compared with its files (left view of both passes, left disparity) pixel by pixel,
    within :data:`CONTENT_TOLERANCE`, which allows the bit-level differences of SIMD paths between CPUs
    but not a change of the generated content. The parameters alone cannot tell: a generator changed
    since the folder was made would be reused silently."""
    subset, seq, frame = _layout(params["train_pairs"], params["test_pairs"])[0]
    base = out / subset
    files = {key: base / folder / seq / "left" / f"{frame}.png"
             for key, folder in (("left", "frames_cleanpass"), ("final_left", "frames_finalpass"))}  # fmt: skip
    files["disp_left"] = base / "disparity" / seq / "left" / f"{frame}.pfm"
    for path in files.values():
        if not path.is_file():
            return f"its first pair's file {path} is missing"
    h, w = params["height"], params["width"]
    pair = _render_index(params["seed"], 0, h, w, params["max_disp"], params["objects"], params["version"])
    levels, px, share = CONTENT_TOLERANCE["levels"], CONTENT_TOLERANCE["pixels"], CONTENT_TOLERANCE["share"]
    for key, path in files.items():
        if key == "disp_left":
            ours, theirs, limit, unit = pair[key], read_pfm(path), px, " px"
        else:
            try:
                theirs = read_rgb(path) * 255
            except DataError:
                theirs = None
            ours, limit, unit = np.clip(pair[key] * 255 + 0.5, 0, 255).astype(np.uint8), levels, " grey levels"
        if theirs is None or theirs.shape != ours.shape:
            return f"{path} is not a {w}x{h} {'disparity' if key == 'disp_left' else 'image'}"
        off = float(np.mean(np.abs(theirs.astype(np.float64) - ours) > limit))
        if off > share:
            return f"{100 * off:.1f}% of {path} differs by more than {limit}{unit} from what this code renders"
    return None


def _worker_signals() -> None:
    """In a generation worker: SIGTERM kills at once and Ctrl-C is left to the parent. A forked worker
    inherits the parent's Python SIGTERM handler (stereo.apps.run's, which raises SystemExit); a worker then
    stopped by the pool's terminate() ran Python's exit cleanup and could wait forever on a lock held at
    fork time, leaving the parent waiting for it after the last pair (seen once with workers=2)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when its parent dies (``kill -9`` of the generator), instead
    of leaving it to finish its pair and print a BrokenPipeError traceback into the user's terminal."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)


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
        import threading

        # Workers are forked with SIGTERM at its default: a worker terminated before its initializer ran would
        # otherwise run the parent's Python handler, live on and keep the pool's exit waiting (seen in CI).
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, signal.SIG_DFL) if main else None
        try:
            pool = mp.get_context("fork").Pool(workers, initializer=_worker_signals)
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
        with pool:
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
        # log-log slope of the left views' power spectra, 0.02-0.25 cycles/px (photographs: about -2.4..-2.7)
        "spectral_slope": {
            "clean": round(float(np.median([r["slopes"][0] for r in results])), 3),
            "final": round(float(np.median([r["slopes"][1] for r in results])), 3),
        },
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
        f"textureless {100 * stats['textureless_share']:.1f}% of pixels; spectral slope (median, left) clean "
        f"{stats['spectral_slope']['clean']:.2f}, final {stats['spectral_slope']['final']:.2f}\n"
        f"left disparity histogram:\n{rows}"
    )
