"""Generators v5, v8 and v9 (benchmarks), v6, v7 and v10 (training data): real photographs warped by known,
piecewise-smooth disparity.

The left view is a crop of a photograph of the version's set (v5: one that no training data uses; v6: the
training photographs of v3; never enlarged, only rotated by quarter turns, flipped and cropped). Its
regions, found by a colour segmentation of the photograph (Felzenszwalb's graph method), become layers: a
few of them float in front of a background surface, so depth edges fall on the photograph's own edges, as
in a real scene. Every layer's disparity is smooth in closed form (a plane with a little curvature,
slanted), and the layers in front sit from a fraction of a pixel to many pixels above what is behind them.

The right view is rendered, not shifted: for each of s x s samples per pixel, every layer's left-view
position ``x_l - d(x_l, y) = x_r`` is solved (Newton), kept where that layer covers the left pixel, the
nearest layer wins, and the photograph is sampled there (bicubic); the samples are averaged over the pixel.
The left view goes through the same sampling at ``d = 0``, so both views carry the same resampling. A layer
is sampled from the photograph with everything in front of it inpainted, so what the left view hides is
not the front layer's texture again. Ground truth: the disparity at each pixel centre, exact (the layers'
formulas). The final pass is generator v4's camera model of one good rig.

v8 renders the scene at twice the views' resolution and reduces it by block means (views as sharp as a
sensor's; ground truth at each view pixel's centre, exact), with the camera at the scene's size. v9 adds
glossy surfaces: part of their colour is a reflection at another depth, so it differs between the views. v10 is
v9 on the training photographs (with some weak surfaces), for training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

LAYER_AREA = (0.004, 0.2)  # fraction of the image a foreground layer (one photograph region) may cover
RELIEF_PX = (0.2, 3.0)  # amplitude (std) of a surface's relief, pixels of disparity, log-uniform
GAP = (0.3, 0.3)  # a layer's step above what is behind it: from GAP[0] px to GAP[1] x max_disp, log-uniform
# Real rigs' flaws, off by default (probes of docs/data.md; nothing is drawn while they are 0, so the default
# output stays as it was): the right view's rows off by up to VERTICAL_PX pixels (a residual of rectification:
# an offset and a rotation, not in the ground truth), and each surface's brightness in the right view scaled by
# 1 + N(0, GAIN_STD) (view-dependent appearance: glossy surfaces seen from another angle).
VERTICAL_PX = 0.0
GAIN_STD = 0.0
# Glossy surfaces (generator v9, :func:`_gloss`):
REFLECTANCE = (0.05, 0.25)  # share of a glossy surface's colour that is reflection, uniform
REFLECTION_DEPTH = (0.0, 0.5)  # reflected scene's disparity / the surface's, uniform (a mirror image lies behind)
REFLECTION_CELL = 20  # view pixels: the scale of the reflected scene's bright and dark regions


@dataclass(frozen=True)
class _Layer:
    """d(x, y) = c + a u + b v + p u^2 + q v^2 + r(x, y) with u = (x - x0) / w, v = (y - y0) / h (pixels):
    a slanted, curved surface with a relief ``r``, a field on the pixel grid interpolated bilinearly (fine
    geometric detail, as real surfaces have and a 1/4-resolution cost volume smooths away)."""

    c: float
    a: float
    b: float
    p: float
    q: float
    x0: float
    y0: float
    w: float
    h: float
    relief: np.ndarray | None = None  # (H, W) pixels of disparity at the pixel centres

    def disparity(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = (x - self.x0) / self.w, (y - self.y0) / self.h
        d = self.c + self.a * u + self.b * v + self.p * u * u + self.q * v * v
        return d if self.relief is None else d + _bilinear(self.relief, x, y)

    def slope_x(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """d d / d x (pixels per pixel)."""
        s = (self.a + 2 * self.p * (x - self.x0) / self.w) / self.w
        return s if self.relief is None else s + _bilinear_dx(self.relief, x, y)

    def left_x(self, xr: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The left-view x whose match on the right is ``xr``: x - d(x, y) = xr, by Newton from x = xr + d
        (the relief's slope is kept below 0.6: one root)."""
        x = xr + self.disparity(xr, y)
        for _ in range(8):
            x = x - (x - self.disparity(x, y) - xr) / np.maximum(1 - self.slope_x(x, y), 0.2)
            # Far from its region a small layer's quadratic is meaningless (and that region alone is kept).
            x = np.clip(np.nan_to_num(x, nan=-1e4), -1e4, 1e4)
        return x


def _cell(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The grid cell of each real position (clamped at the borders): its corner (x0, y0) and the position
    within it (fx, fy) in [0, 1]."""
    h, w = field.shape
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(np.int64), w - 2), np.minimum(np.floor(y).astype(np.int64), h - 2)
    return x0, y0, x - x0, y - y0


def _bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``field`` (H, W) at real positions (pixel centres at integers), linear between them, clamped at the
    borders; float64 throughout (OpenCV's remap rounds positions to 1/32 px)."""
    x0, y0, fx, fy = _cell(field, x, y)
    top = field[y0, x0] * (1 - fx) + field[y0, x0 + 1] * fx
    bottom = field[y0 + 1, x0] * (1 - fx) + field[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _bilinear_dx(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The derivative along x of :func:`_bilinear` (within each cell: the cell's difference, linear in y)."""
    x0, y0, _, fy = _cell(field, x, y)
    top, bottom = field[y0, x0 + 1] - field[y0, x0], field[y0 + 1, x0 + 1] - field[y0 + 1, x0]
    return top * (1 - fy) + bottom * fy


def _relief(rng: np.random.Generator, grey: np.ndarray) -> np.ndarray:
    """A relief field (H, W) in pixels of disparity: band-limited noise, partly following the photograph's
    shading (detail where the texture has it), 0.2-3 px in amplitude, its slope along x kept below 0.6."""
    h, w = grey.shape
    wavelength = float(np.exp(rng.uniform(np.log(6), np.log(60))))  # pixels
    cells = (max(2, int(h / wavelength) + 2), max(2, int(w / wavelength) + 2))
    noise = cv2.resize(rng.standard_normal(cells).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    shading = grey - cv2.GaussianBlur(grey, (0, 0), wavelength / 2)
    field = [f / max(float(f.std()), 1e-6) for f in (noise.astype(np.float64), shading.astype(np.float64))]
    mix = float(rng.uniform(0, 1))
    relief = (1 - mix) * field[0] + mix * field[1]
    relief = cv2.GaussianBlur(relief, (0, 0), 0.7) * float(np.exp(rng.uniform(*np.log(RELIEF_PX))))
    steep = float(np.abs(np.diff(relief, axis=1)).max())
    return relief * min(1.0, 0.6 / max(steep, 1e-9))


def fits(photo: np.ndarray, h: int, w: int) -> bool:
    """Whether the photograph gives an (h, w) crop in some orientation."""
    ph, pw = photo.shape[:2]
    return (ph >= h and pw >= w) or (pw >= h and ph >= w)


def _crop(rng: np.random.Generator, photo: np.ndarray, h: int, w: int, margin: int) -> np.ndarray:
    """A random crop of the photograph, turned by a random quarter turn where it still fits, flipped: h rows,
    w columns and up to ``margin`` more on the right (what the right camera sees beyond the left view)."""
    turns = [k for k in range(4) if np.rot90(photo, k).shape[0] >= h and np.rot90(photo, k).shape[1] >= w]
    if not turns:
        raise ValueError(f"a {photo.shape[1]}x{photo.shape[0]} photograph cannot give a {w}x{h} crop")
    img = np.rot90(photo, int(rng.choice(turns)))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    wide = min(img.shape[1], w + margin)
    y, x = int(rng.integers(0, img.shape[0] - h + 1)), int(rng.integers(0, img.shape[1] - wide + 1))
    return np.ascontiguousarray(img[y : y + h, x : x + wide], dtype=np.float32)


def _regions(rng: np.random.Generator, img: np.ndarray, n_layers: int) -> list[np.ndarray]:
    """Up to ``n_layers`` boolean (h, w) masks: regions of the photograph's segmentation of a usable size."""
    from skimage.segmentation import felzenszwalb

    labels = felzenszwalb(img, scale=float(rng.uniform(150, 600)), sigma=0.8, min_size=int(rng.integers(40, 200)))
    ids, counts = np.unique(labels, return_counts=True)
    lo, hi = (f * labels.size for f in LAYER_AREA)
    usable = rng.permutation(ids[(counts >= lo) & (counts <= hi)])
    return [labels == i for i in usable[:n_layers]]


def _surface(
    rng: np.random.Generator, h: int, w: int, base: float, mask: np.ndarray | None, relief: np.ndarray | None
) -> _Layer:
    """A slanted, slightly curved surface of disparity about ``base`` over ``mask`` (None: the whole image),
    with ``relief``."""
    if mask is None:
        y0, x0, sh, sw = h / 2, w / 2, float(h), float(w)
    else:
        ys, xs = np.nonzero(mask)
        y0, x0 = float(ys.mean()), float(xs.mean())
        sh, sw = float(max(np.ptp(ys), 8)), float(max(np.ptp(xs), 8))
    # Slants up to 0.35 x the disparity across the region, at most 0.3 px per px (no fold in the right view).
    a, b = (float(rng.uniform(-1, 1)) * min(0.35 * base, 0.3 * size) for size in (sw, sh))
    p, q = (float(rng.uniform(-1, 1)) * min(0.1 * base, 0.1 * size) for size in (sw, sh))
    return _Layer(base, a, b, p, q, x0, y0, sw, sh, relief)


def _layers(rng: np.random.Generator, img: np.ndarray, max_disp: float, n_layers: int):
    """The background surface and the foreground layers with their left-view masks (disjoint regions)."""
    import dataclasses

    h, w = img.shape[:2]
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    background = _surface(rng, h, w, float(rng.uniform(0.05, 0.35) * max_disp), None, _relief(rng, grey))
    under = background.disparity(xx, yy)
    layers = []
    for mask in _regions(rng, img, n_layers):
        behind = float(under[mask].max())
        # Steps from a fraction of a pixel (a surface detail) to many pixels (an object well in front).
        gap = float(np.exp(rng.uniform(np.log(GAP[0]), np.log(GAP[1] * max_disp))))
        layer = _surface(rng, h, w, min(behind + gap, 0.85 * max_disp), mask, _relief(rng, grey))
        lift = float(np.maximum(under[mask] + min(gap, 0.1) - layer.disparity(xx[mask], yy[mask]), 0).max())
        layers.append((dataclasses.replace(layer, c=layer.c + lift), mask))
    return background, layers


def render_photo_pair(
    rng: np.random.Generator,
    photos: list[np.ndarray],
    h: int,
    w: int,
    max_disp: float,
    n_layers: int,
    samples: int = 3,
    scale: int = 1,
    gain_std: float | None = None,
    weak_share: float = 0.0,
    glossy_share: float = 0.0,
    camera: Callable[[np.ndarray, np.ndarray], list[np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """One clean pair from a random photograph of ``photos``: ``left``, ``right`` (float RGB (h, w, 3) in
    [0, 1]), ``disp_left``, ``disp_right`` (float32 (h, w), pixels) and ``textureless`` (bool (h, w): the
    left view's flat pixels). ``samples`` per pixel side (odd).

    ``scale`` > 1 (generator v8): the photograph is the scene at ``scale`` times the views' resolution, so each
    view pixel integrates ``scale`` x ``scale`` photograph pixels (``samples`` per side of each) and the views
    carry detail up to their own sampling limit, as a sensor's do; the ground truth stays the exact disparity
    at each view pixel's centre. ``camera`` (left, right) -> (left, right), when given, runs on the views at the
    scene's resolution before they are reduced (a larger sensor's image, reduced) and adds ``final_left`` and
    ``final_right``. ``gain_std`` (default :data:`GAIN_STD`): each surface's brightness in the right view
    scaled by 1 + N(0, gain_std) (view-dependent appearance). ``weak_share``: the share of surfaces whose
    texture keeps only 3-20% of its contrast (painted walls, plastic, skin: hard for any matcher).
    ``glossy_share`` (generator v9): the share of the surfaces whose colour is in part a reflection
    (:func:`_gloss`), so that their appearance differs between the views."""
    if gain_std is None:
        gain_std = GAIN_STD
    s_h, s_w = h * scale, w * scale  # the scene's size, photograph pixels
    usable = [p for p in photos if fits(p, s_h, s_w)]
    img = _crop(rng, usable[int(rng.integers(len(usable)))], s_h, s_w, int(np.ceil(max_disp * scale)))
    view_w, h, w = w, s_h, img.shape[1]  # everything below runs on the scene's wider crop; views keep view_w columns
    background, layers = _layers(rng, img, max_disp * scale, n_layers)
    order = [(background, np.ones((h, w), bool))] + layers  # far to near: each layer's owner mask in the left view
    owner = np.zeros((h, w), np.int32)
    for i, (_, mask) in enumerate(order[1:], start=1):
        owner[mask] = i
    textures = _textures(img, order)
    own: dict[int, np.ndarray] = {}  # the left view's surfaces with a texture other than the photograph
    if weak_share > 0:
        weakened = _weaken(rng, textures, weak_share, 4.0 * scale)
        own = {i: t for i, (t, before) in enumerate(zip(weakened, textures, strict=True)) if t is not before}
        textures = weakened
    if glossy_share > 0:
        left_textures, textures = _gloss(rng, order, textures, glossy_share, scale)
        own.update(left_textures)
    right_textures = textures
    if gain_std > 0:
        right_textures = [t * (1 + rng.normal(0, gain_std)) for t in textures]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rows_off = np.zeros((h, w))
    if VERTICAL_PX > 0:  # |offset| + |rotation| <= VERTICAL_PX view pixels at every pixel
        shift, tilt = rng.uniform(-0.5, 0.5, 2) * VERTICAL_PX * scale
        rows_off = shift + tilt * (xx - w / 2) / (w / 2)
    disp_left = np.zeros((h, w))
    for i, (layer, _) in enumerate(order):
        sel = owner == i
        disp_left[sel] = layer.disparity(xx[sel], yy[sel])
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    left = np.zeros((h, w, 3), np.float64)
    right = np.zeros((h, w, 3), np.float64)
    disp_right = np.zeros((h, w))
    centre = samples // 2
    for j, oy in enumerate(offsets):
        for k, ox in enumerate(offsets):
            xs, ys = xx + ox, yy + oy
            left += _left_samples(img, own, owner, xs, ys)
            colour, d = _right_samples(order, owner, disp_left, right_textures, xs, ys + rows_off)
            right += colour
            if j == centre and k == centre:
                disp_right = d
    n = samples * samples
    left, right = np.clip(left / n, 0, 1).astype(np.float32), np.clip(right / n, 0, 1).astype(np.float32)
    if scale == 1:
        keep = (slice(None), slice(0, view_w))
        return {"left": left[keep], "right": right[keep], "disp_left": disp_left[keep].astype(np.float32),
                "disp_right": disp_right[keep].astype(np.float32),
                "textureless": _flat(img)[keep]}  # fmt: skip
    return _reduced(order, owner, disp_left, right_textures, rows_off, left, right, scale, view_w, camera)


def _left_samples(img: np.ndarray, textures: dict[int, np.ndarray], owner: np.ndarray, x: np.ndarray,
                  y: np.ndarray) -> np.ndarray:  # fmt: skip
    """The left view's colour (h, w, 3) at the sample positions (x, y), d = 0: the photograph, except where the
    surface that owns the sample has a texture of its own (``textures``: surface index -> texture; the weak ones
    of :func:`_weaken`, which the right view sees too, and the glossy ones of :func:`_gloss`, which it sees with
    the reflection moved): that texture."""
    out = _bicubic(img, x, y)
    if textures:
        h, w = owner.shape
        who = owner[np.clip(np.rint(y), 0, h - 1).astype(np.int64), np.clip(np.rint(x), 0, w - 1).astype(np.int64)]
        for i, t in textures.items():
            sel = who == i
            if sel.any():
                out[sel] = _bicubic(t, x[sel], y[sel])
    return out


def _flat(img: np.ndarray) -> np.ndarray:
    """Bool (h, w): pixels of ``img`` (RGB in [0, 1]) whose 7 x 7 neighbourhood has a grey std below 0.01."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.sqrt(np.maximum(cv2.blur(grey * grey, (7, 7)) - cv2.blur(grey, (7, 7)) ** 2, 0)) < 0.01


def _reduce(img: np.ndarray, scale: int, view_w: int) -> np.ndarray:
    """The mean of each ``scale`` x ``scale`` block of ``img`` (h * scale, >= view_w * scale, ...): view
    pixels from scene pixels, the first ``view_w`` columns."""
    h, w = img.shape[0] // scale, view_w
    block = img[: h * scale, : w * scale].astype(np.float64)
    return block.reshape(h, scale, w, scale, *img.shape[2:]).mean(axis=(1, 3)).astype(np.float32)


def _reduced(order: list, owner: np.ndarray, disp_left: np.ndarray, textures: list[np.ndarray],
             rows_off: np.ndarray, left: np.ndarray, right: np.ndarray, scale: int, view_w: int,
             camera: Callable[[np.ndarray, np.ndarray], list[np.ndarray]] | None) -> dict[str, np.ndarray]:  # fmt: skip
    """The views of a scene rendered at ``scale`` x their resolution, with the exact disparity at each view
    pixel's centre: in scene pixels (x + 0.5) * scale - 0.5, the surface that owns the scene pixel there
    (left view) or the nearest one that maps there (right view), divided by ``scale``."""
    h = left.shape[0] // scale
    yy, xx = np.mgrid[0:h, 0:view_w].astype(np.float64)
    ys, xs = (yy + 0.5) * scale - 0.5, (xx + 0.5) * scale - 0.5
    who = owner[np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)]
    gt_left = np.zeros((h, view_w))
    for i, (layer, _) in enumerate(order):
        sel = who == i
        gt_left[sel] = layer.disparity(xs[sel], ys[sel])
    # The right view's centres are every scale-th point of the scene grid moved by (scale - 1) / 2: solved on that
    # whole grid, as _right_samples' windows expect positions that follow their indices.
    sy, sx = np.mgrid[0 : owner.shape[0], 0 : owner.shape[1]].astype(np.float64) + (scale - 1) / 2
    _, gt_right = _right_samples(order, owner, disp_left, textures, sx, sy + rows_off)
    gt_right = gt_right[::scale, ::scale][:h, :view_w]
    out = {"left": _reduce(left, scale, view_w), "right": _reduce(right, scale, view_w),
           "disp_left": (gt_left / scale).astype(np.float32),
           "disp_right": (gt_right / scale).astype(np.float32)}  # fmt: skip
    out["textureless"] = _flat(out["left"])
    if camera is not None:
        cols = slice(0, view_w * scale)  # the views' own frame (vignetting is centred on it)
        final = camera(left[:, cols], right[:, cols])
        out["final_left"], out["final_right"] = (_reduce(v, scale, view_w) for v in final)
    return out


def _gloss(rng: np.random.Generator, order: list, textures: list[np.ndarray], share: float,
           scale: int) -> tuple[dict[int, np.ndarray], list[np.ndarray]]:  # fmt: skip
    """Glossy surfaces: with probability ``share`` each surface (the background included) shows
    ``t (1 - r) + r E`` instead of its texture ``t``: r drawn from :data:`REFLECTANCE`, E a smooth reflected scene
    in [0, 1] (grey; cubic noise with :data:`REFLECTION_CELL` view-pixel cells through a logistic). The reflection
    is a mirror image behind the surface, at disparity k d with k from :data:`REFLECTION_DEPTH`, d the surface's
    own disparity: at a left-view position x the left view sees E(x), the right view E(x - (1 - k) d(x, y)), so the
    reflection slides over the texture between the views. Returns the left view's textures of the glossy
    surfaces (surface index -> texture) and every surface's texture as the right view sees it."""
    h, w = textures[0].shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    left, right = {}, list(textures)
    for i in range(len(order)):
        if rng.random() >= share:
            continue
        r, k = float(rng.uniform(*REFLECTANCE)), float(rng.uniform(*REFLECTION_DEPTH))
        slide = ((1 - k) * order[i][0].disparity(xx, yy)).astype(np.float32)
        pad = int(np.ceil(slide.max())) + 2
        cell = REFLECTION_CELL * scale
        coarse = rng.standard_normal((h // cell + 3, (w + pad) // cell + 3)).astype(np.float32)
        field = cv2.resize(coarse, ((coarse.shape[1] - 1) * cell, (coarse.shape[0] - 1) * cell),
                           interpolation=cv2.INTER_CUBIC)[:h, : w + pad]  # fmt: skip
        field = 1 / (1 + np.exp(-2.5 * field))
        e_left = field[:, pad:]
        e_right = cv2.remap(field, xx + pad - slide, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        t = textures[i]
        left[i] = np.clip(t * (1 - r) + r * e_left[..., None], 0, 1).astype(np.float32)
        right[i] = np.clip(t * (1 - r) + r * e_right[..., None], 0, 1).astype(np.float32)
    return left, right


def _weaken(rng: np.random.Generator, textures: list[np.ndarray], share: float, sigma: float) -> list[np.ndarray]:
    """Each surface's texture, with probability ``share`` kept at 3-20% of its contrast around its own local
    mean (Gaussian, ``sigma`` scene pixels): the shading stays, the fine texture nearly goes."""
    out = []
    for t in textures:
        if rng.random() < share:
            keep = float(np.exp(rng.uniform(np.log(0.03), np.log(0.2))))
            base = cv2.GaussianBlur(t, (0, 0), sigma)
            t = (base + keep * (t - base)).astype(np.float32)
        out.append(t)
    return out


def _textures(img: np.ndarray, order: list) -> list[np.ndarray]:
    """Each layer's texture: the photograph, and for the background the photograph with every layer in front
    inpainted (the background continues behind them; a layer in front exists only where the left view sees it)."""
    front = np.zeros(img.shape[:2], np.uint8)
    for _, mask in order[1:]:
        front[mask] = 1
    if not front.any():
        return [img] * len(order)
    code = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    filled = cv2.inpaint(code, cv2.dilate(front, np.ones((3, 3), np.uint8)), 5, cv2.INPAINT_TELEA)
    background = np.where(front[..., None] > 0, filled.astype(np.float32) / 255, img)
    return [background] + [img] * (len(order) - 1)


def _bicubic(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``img`` (H, W, C) at real positions (pixel centres at integers): Catmull-Rom (Keys, a = -0.5), borders
    reflected, in float64 (OpenCV's remap rounds positions to 1/32 px, which the ground truth would feel)."""
    h, w = img.shape[:2]
    out = np.zeros((*x.shape, img.shape[2]))
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    wx, wy = _keys(x - x0), _keys(y - y0)
    for j in range(4):
        rows = _reflect(y0 + j - 1, h)
        for i in range(4):
            out += (wy[j] * wx[i])[..., None] * img[rows, _reflect(x0 + i - 1, w)]
    return out


def _keys(t: np.ndarray) -> list[np.ndarray]:
    """The four Catmull-Rom weights of the samples at -1, 0, 1, 2 for a position t in [0, 1) past sample 0."""
    t2, t3 = t * t, t * t * t
    return [-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1, -1.5 * t3 + 2 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2]


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected into 0..n-1 without repeating the edge (OpenCV's BORDER_REFLECT_101)."""
    period = 2 * (n - 1)
    i = np.abs(i) % period
    return np.where(i >= n, period - i, i)


def _right_samples(
    order: list, owner: np.ndarray, disp_left: np.ndarray, textures: list[np.ndarray], xr: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Colour (h, w, 3) and disparity (h, w) of the right view at the sample positions (xr, y): for each layer
    the left position that maps there, kept where the layer owns that left pixel (the background: anywhere);
    the nearest layer wins. A layer in front is solved only in the window its region can reach."""
    h, w = owner.shape
    best = np.full(xr.shape, -np.inf)
    colour = np.zeros((*xr.shape, 3))
    for i, (layer, mask) in enumerate(order):
        if i == 0:
            window: tuple[slice, slice] = (slice(None), slice(None))
        else:
            ys, xs = np.nonzero(mask)
            d = disp_left[mask]
            window = (slice(max(ys.min() - 1, 0), ys.max() + 2),
                      slice(max(int(xs.min() - d.max()) - 3, 0), max(int(xs.max() - d.min()) + 4, 0)))  # fmt: skip
        xw, yw = xr[window], y[window]
        if xw.size == 0:
            continue
        xl = layer.left_x(xw, yw)
        col, row = np.rint(xl).astype(np.int64), np.clip(np.rint(yw), 0, h - 1).astype(np.int64)
        ok = np.ones(xw.shape, bool) if i == 0 else (col >= 0) & (col < w) & (owner[row, np.clip(col, 0, w - 1)] == i)
        d = layer.disparity(xl, yw)
        win = ok & (d > best[window])
        if win.any():
            best[window] = np.where(win, d, best[window])
            colour[window][win] = _bicubic(textures[i], xl[win], yw[win])
    return colour, best
