"""Exact ray casting of simple 3-D scenes for a rectified stereo camera (the generator's geometry).

The left camera sits at the origin, the right one at (B, 0, 0); both look along +Z with focal length
``f`` pixels and principal point (cx, cy). The ray through pixel (x, y) of a view is
``P(t) = O + t * ((x - cx) / f, (y - cy) / f, 1)``, so the ray parameter ``t`` is the depth Z, and the
disparity of the surface point hit is ``f * B / Z`` in both views. Every shape here is intersected in
closed form (planes, ellipsoids, cylinders, boxes) or by bisection on a monotone function (height
fields), so the ground truth is exact and both views see the same surface point at
``x_right = x_left - d``.

Each :meth:`Shape.intersect` returns the depth (inf where the ray misses), the world normal and the
surface (u, v) coordinates in world units, which index the shape's texture.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

INF = np.float32(np.inf)

# Generator v4 computes its per-pixel geometry with explicit products instead of BLAS (whose kernels, chosen
# per CPU, round differently): the same bytes on every machine. v2 and v3 keep BLAS, as their manifests were.
_EXPLICIT = [False]


@contextmanager
def explicit_products(on: bool = True) -> Iterator[None]:
    """Within the block, vector-matrix products of the geometry are explicit sums (no BLAS)."""
    before = _EXPLICIT[0]
    _EXPLICIT[0] = on
    try:
        yield
    finally:
        _EXPLICIT[0] = before


def mm(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``a @ m`` for (..., 3) rows ``a`` and a (3, k) or (3,) ``m``; explicit under :func:`explicit_products`."""
    if not _EXPLICIT[0]:
        return a @ m
    a, m = np.asarray(a, np.float64), np.asarray(m, np.float64)
    if m.ndim == 1:
        return a[..., 0] * m[0] + a[..., 1] * m[1] + a[..., 2] * m[2]
    return a[..., 0, None] * m[0] + a[..., 1, None] * m[1] + a[..., 2, None] * m[2]


@dataclass(frozen=True)
class Camera:
    f: float
    cx: float
    cy: float
    baseline: float = 1.0

    def origin_x(self, right: bool) -> float:
        return self.baseline if right else 0.0

    def rays(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ray directions (dx, dy) for pixel coordinates; dz = 1."""
        return ((xs - self.cx) / self.f).astype(np.float64), ((ys - self.cy) / self.f).astype(np.float64)


def rotation(rng: np.random.Generator, max_angle: float = np.pi) -> np.ndarray:
    """A random rotation matrix (local -> world) with angle up to ``max_angle`` about a random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


@dataclass
class Shape:
    """A shape in a local frame: world point = R @ local + C."""

    center: np.ndarray
    R: np.ndarray = field(default_factory=lambda: np.eye(3))

    def radius(self) -> float:  # bounding sphere radius around the centre
        raise NotImplementedError

    def _local_rays(self, ox: float, dx: np.ndarray, dy: np.ndarray):
        o = np.array([ox, 0.0, 0.0]) - self.center
        o = mm(o, self.R) if _EXPLICIT[0] else self.R.T @ o  # R^T (O - C)
        d = mm(np.stack([dx, dy, np.ones_like(dx)], -1), self.R)  # rows: R^T d
        return o, d

    def intersect(self, ox: float, dx: np.ndarray, dy: np.ndarray):
        """(depth, world normal (..., 3), u, v) for rays from (ox, 0, 0); depth inf where missed."""
        o, d = self._local_rays(ox, dx, dy)
        t, n_local, u, v = self._hit(o, d)
        n = mm(n_local, self.R.T)
        return t, n, u, v

    def _hit(self, o, d):
        raise NotImplementedError


def _nearest_positive(*ts: np.ndarray) -> np.ndarray:
    out = np.full(ts[0].shape, np.inf)
    for t in ts:
        out = np.where((t > 1e-6) & (t < out), t, out)
    return out


@dataclass
class Ellipsoid(Shape):
    radii: np.ndarray = field(default_factory=lambda: np.ones(3))

    def radius(self) -> float:
        return float(self.radii.max())

    def _hit(self, o, d):
        o_s, d_s = o / self.radii, d / self.radii
        a = (d_s * d_s).sum(-1)
        b = (d_s * o_s).sum(-1)
        c = float((o_s * o_s).sum()) - 1.0 if _EXPLICIT[0] else float(o_s @ o_s) - 1.0
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0))
        t = np.where(disc >= 0, _nearest_positive((-b - root) / a, (-b + root) / a), np.inf)
        p = o + np.where(np.isfinite(t), t, 0)[..., None] * d
        n = p / self.radii**2
        r = self.radii
        u = np.arctan2(p[..., 1] / r[1], p[..., 0] / r[0]) * 0.5 * (r[0] + r[1])
        v = np.arccos(np.clip(p[..., 2] / r[2], -1, 1)) * r[2]
        return t, n, u, v


@dataclass
class Cylinder(Shape):
    """Radius ``r`` around the local z axis, |z| <= ``half_length``, with end caps."""

    r: float = 1.0
    half_length: float = 1.0

    def radius(self) -> float:
        return float(np.hypot(self.r, self.half_length))

    def _hit(self, o, d):
        a = d[..., 0] ** 2 + d[..., 1] ** 2
        b = o[0] * d[..., 0] + o[1] * d[..., 1]
        c = o[0] ** 2 + o[1] ** 2 - self.r**2
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0))
        a_safe = np.where(a > 1e-12, a, 1.0)
        sides = []
        for t in ((-b - root) / a_safe, (-b + root) / a_safe):
            z = o[2] + t * d[..., 2]
            sides.append(np.where((disc >= 0) & (a > 1e-12) & (np.abs(z) <= self.half_length), t, np.inf))
        caps = []
        dz = np.where(np.abs(d[..., 2]) > 1e-12, d[..., 2], 1e-12)
        for zc in (-self.half_length, self.half_length):
            t = (zc - o[2]) / dz
            x, y = o[0] + t * d[..., 0], o[1] + t * d[..., 1]
            caps.append(np.where(x * x + y * y <= self.r**2, t, np.inf))
        t = _nearest_positive(*sides, *caps)
        p = o + np.where(np.isfinite(t), t, 0)[..., None] * d
        on_cap = np.abs(np.abs(p[..., 2]) - self.half_length) < 1e-6 * max(1.0, self.half_length)
        n = np.where(on_cap[..., None], np.stack([0 * p[..., 0], 0 * p[..., 0], np.sign(p[..., 2])], -1),
                     np.stack([p[..., 0], p[..., 1], 0 * p[..., 0]], -1))  # fmt: skip
        u = np.where(on_cap, p[..., 0], np.arctan2(p[..., 1], p[..., 0]) * self.r)
        v = np.where(on_cap, p[..., 1] + 3 * self.half_length, p[..., 2])
        return t, n, u, v


@dataclass
class Box(Shape):
    half: np.ndarray = field(default_factory=lambda: np.ones(3))

    def radius(self) -> float:
        return float(np.linalg.norm(self.half))

    def _hit(self, o, d):
        d_safe = np.where(np.abs(d) > 1e-12, d, 1e-12)
        t1 = (-self.half - o) / d_safe
        t2 = (self.half - o) / d_safe
        tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
        near, far = tmin.max(-1), tmax.min(-1)
        axis = tmin.argmax(-1)
        t = np.where((near <= far) & (near > 1e-6), near, np.inf)
        p = o + np.where(np.isfinite(t), t, 0)[..., None] * d
        n = np.zeros_like(p)
        np.put_along_axis(n, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), -1)
        # Texture coordinates: the two in-face axes, faces offset so they do not share texels.
        uv = [np.take_along_axis(p, ((axis + k) % 3)[..., None], -1)[..., 0] for k in (1, 2)]
        return t, n, uv[0] + 4 * axis * self.half.max(), uv[1]


@dataclass
class Patch(Shape):
    """A flat superellipse |x/a|^p + |y/b|^p <= 1 in the local z = 0 plane (a, b = inf: unbounded)."""

    a: float = 1.0
    b: float = 1.0
    power: float = 2.0

    def radius(self) -> float:
        return float(np.hypot(self.a, self.b))

    def _hit(self, o, d):
        dz = np.where(np.abs(d[..., 2]) > 1e-12, d[..., 2], 1e-12)
        t = -o[2] / dz
        x, y = o[0] + t * d[..., 0], o[1] + t * d[..., 1]
        inside = np.abs(x / self.a) ** self.power + np.abs(y / self.b) ** self.power <= 1.0
        t = np.where(inside & (t > 1e-6), t, np.inf)
        n = np.broadcast_to(np.array([0.0, 0.0, 1.0]), x.shape + (3,))
        return t, n, x, y


@dataclass
class HeightField(Shape):
    """z = sum_k amp_k sin(wx_k x + wy_k y + phase_k) over |x| <= a, |y| <= b (local frame).

    Slopes are kept below 0.5 so that along any ray within 60 degrees of the local z axis the signed
    height difference is monotone: bisection between the two bounding planes finds the only crossing.
    """

    a: float = 1.0
    b: float = 1.0
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (amp, wx, wy, phase)

    def radius(self) -> float:
        return float(np.hypot(self.a, self.b) + np.abs(self.waves[:, 0]).sum())

    def height(self, x, y):
        h = np.zeros_like(x)
        for amp, wx, wy, ph in self.waves:
            h = h + amp * np.sin(wx * x + wy * y + ph)
        return h

    def _grad(self, x, y):
        gx, gy = np.zeros_like(x), np.zeros_like(x)
        for amp, wx, wy, ph in self.waves:
            c = amp * np.cos(wx * x + wy * y + ph)
            gx, gy = gx + c * wx, gy + c * wy
        return gx, gy

    def _hit(self, o, d):
        top = float(np.abs(self.waves[:, 0]).sum()) + 1e-9
        dz = np.where(np.abs(d[..., 2]) > 1e-12, d[..., 2], 1e-12)
        ta, tb = (top - o[2]) / dz, (-top - o[2]) / dz
        lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
        sign = np.sign(o[2] + lo * d[..., 2] - self.height(o[0] + lo * d[..., 0], o[1] + lo * d[..., 1]))
        for _ in range(32):
            mid = 0.5 * (lo + hi)
            g = o[2] + mid * d[..., 2] - self.height(o[0] + mid * d[..., 0], o[1] + mid * d[..., 1])
            same = np.sign(g) == sign
            lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
        t = 0.5 * (lo + hi)
        x, y = o[0] + t * d[..., 0], o[1] + t * d[..., 1]
        ok = (np.abs(x) <= self.a) & (np.abs(y) <= self.b) & (t > 1e-6)
        gx, gy = self._grad(x, y)
        n = np.stack([-gx, -gy, np.ones_like(gx)], -1)
        return np.where(ok, t, np.inf), n, x, y


def plane_from_disparity(cam: Camera, d0: float, gx: float, gy: float) -> tuple[np.ndarray, float]:
    """The world plane n . P = c whose left-view disparity is d0 + gx (x - cx) + gy (y - cy)."""
    return np.array([gx * cam.f, gy * cam.f, d0]), cam.f * cam.baseline


@dataclass
class Plane(Shape):
    """An unbounded plane n . P = c (the background)."""

    normal: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    c: float = 1.0
    texel: float = 1.0  # world units per texture texel

    def radius(self) -> float:
        return float("inf")

    def intersect(self, ox, dx, dy):
        n = self.normal
        denom = n[0] * dx + n[1] * dy + n[2]
        t = (self.c - n[0] * ox) / np.where(np.abs(denom) > 1e-12, denom, 1e-12)
        t = np.where(t > 1e-6, t, np.inf)
        p = np.stack([ox + t * dx, t * dy, t], -1)
        e1 = np.cross(n, [0.0, 1.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(n / np.linalg.norm(n), e1)
        normal = np.broadcast_to(n / np.linalg.norm(n), p.shape)
        return t, normal, mm(p, e1), mm(p, e2)
