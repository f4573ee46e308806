import json

import cv2
import numpy as np
import pytest

from stereo.data.images import read_rgb
from stereo.data.pfm import read_pfm
from stereo.data.sceneflow import discover
from stereo.data.synthetic import SHAPES, generate_sceneflow_sample, render_pair


def _views(sample):
    disp_right = sample.disparity.parent.parent / "right" / sample.disparity.name
    return read_rgb(sample.left), read_rgb(sample.right), read_pfm(sample.disparity), read_pfm(disp_right)


def test_layout_is_official(sample_root):
    manifest = json.loads((sample_root / "sample.json").read_text())["parameters"]
    assert manifest["height"] == 64 and manifest["width"] == 128
    for sub in ("FlyingThings3D", "Driving", "Monkaa"):
        for folder in ("frames_cleanpass", "frames_finalpass", "disparity"):
            assert (sample_root / sub / folder).is_dir()
    ft = sample_root / "FlyingThings3D"
    assert sorted(p.name for p in (ft / "frames_cleanpass").iterdir()) == ["TEST", "TRAIN"]
    assert (ft / "frames_cleanpass/TRAIN/A/0000/left/0006.png").is_file()
    assert (ft / "disparity/TRAIN/A/0000/right/0006.pfm").is_file()
    assert (sample_root / "Driving/frames_finalpass/15mm_focallength/scene_forwards/fast/left/0001.png").is_file()
    assert (sample_root / "Monkaa/disparity/synthetic_scene_00/left/0000.pfm").is_file()
    assert not list(sample_root.parent.glob(".*partial"))


@pytest.mark.parametrize("split", ["train", "test"])
def test_photometric_and_left_right_consistency(sample_root, split):
    samples = discover(sample_root, split=split, cache=False)
    checked = 0
    for s in samples:
        left, right, d_left, d_right = _views(s)
        h, w = d_left.shape
        assert np.isfinite(d_left).all() and (d_left > 0).all() and (d_right > 0).all()
        xs = np.arange(w)[None, :] - d_left  # where each left pixel lands in the right view
        inside = xs >= 1
        # The right view at the correspondence shows the same surface or a nearer one, never a farther one.
        x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
        x1 = np.clip(x0 + 1, 0, w - 1)
        rows = np.arange(h)[:, None]
        seen = np.maximum(d_right[rows, x0], d_right[rows, x1])
        # Tolerance 0.3 px: on a slanted plane the neighbouring right pixels are other surface points.
        farther = inside & (seen < d_left - 0.3)
        # Exceptions only where the surface is under a pixel wide (tips of shapes): at a depth edge.
        edge = cv2.dilate(d_left, np.ones((3, 3))) - cv2.erode(d_left, np.ones((3, 3))) > 0.3
        assert not (farther & ~edge).any()
        assert farther.sum() <= 0.02 * inside.sum()  # sub-pixel rods and slats slip between right pixel centres
        # Non-occluded: both neighbours see the same surface; compare colours there.
        same = inside & (np.abs(d_right[rows, x0] - d_left) < 0.3) & (np.abs(d_right[rows, x1] - d_left) < 0.3)
        same = cv2.erode(same.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert same.mean() > 0.4
        warped = cv2.remap(right, xs.astype(np.float32), np.repeat(rows, w, 1).astype(np.float32), cv2.INTER_LINEAR)
        err = np.abs(warped - left).max(axis=2)[same]
        assert np.median(err) < 0.01, np.median(err)
        # High-frequency textures (stripes, grids, text) at about one texel per pixel make linear
        # interpolation err at their sharpest edges; the geometry itself is checked exactly below.
        assert np.percentile(err, 99) < 0.2, np.percentile(err, 99)
        _assert_disparities_agree(d_left, d_right)
        checked += 1
    assert checked == len(samples) > 0


def _assert_disparities_agree(d_left, d_right):
    """Where both right neighbours of x - d see the same surface, the right disparity interpolated there
    is the left one: exact on planes, second-order small on curved surfaces."""
    h, w = d_left.shape
    xs = np.arange(w)[None, :] - d_left
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
    x1 = np.clip(x0 + 1, 0, w - 1)
    rows = np.arange(h)[:, None]
    same = (xs >= 1) & (np.abs(d_right[rows, x0] - d_left) < 0.3) & (np.abs(d_right[rows, x1] - d_left) < 0.3)
    a = xs - np.floor(xs)
    err = np.abs(d_right[rows, x0] * (1 - a) + d_right[rows, x1] * a - d_left)[same]
    assert same.sum() > 0.2 * h * w
    assert np.median(err) < 1e-3 and np.percentile(err, 99) < 0.1, (np.median(err), np.percentile(err, 99))


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_is_consistent_between_views(shape):
    pair = render_pair(np.random.default_rng(5), 96, 160, 32.0, 4, shape=shape)
    d_left, d_right = pair["disp_left"], pair["disp_right"]
    assert np.isfinite(d_left).all() and d_left.max() <= 32.0 + 1e-3
    near = d_left > np.percentile(d_left, 5) + 1.0
    assert near.mean() > (0.003 if shape == "rod" else 0.02)  # the shapes are in view, in front of the background
    _assert_disparities_agree(d_left, d_right)


def test_closed_form_depths():
    """Rays through the principal point hit each shape where its geometry says."""
    from stereo.data import scene3d as s3

    z, r = 10.0, 2.0
    centre = np.array([0.0, 0.0, z])
    zero = np.zeros(1)
    cases = [
        (s3.Ellipsoid(centre, np.eye(3), np.array([r, r, r])), z - r),
        (s3.Ellipsoid(centre, np.eye(3), np.array([3.0, 1.0, 0.5])), z - 0.5),
        (s3.Cylinder(centre, s3.rotation(np.random.default_rng(0), 0) @ np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]]),
                     r, 5.0), z - r),
        (s3.Box(centre, np.eye(3), np.array([1.0, 1.0, 0.75])), z - 0.75),
        (s3.Patch(centre, np.eye(3), 1.0, 1.0, 2.0), z),
        (s3.HeightField(centre, np.eye(3), 3.0, 3.0, np.array([[0.3, 1.0, 0.0, np.pi / 2]])), z + 0.3),
    ]  # fmt: skip
    for shape, expected in cases:
        t, _, _, _ = shape.intersect(0.0, zero, zero)
        assert t[0] == pytest.approx(expected, abs=1e-6), type(shape).__name__
    # Off-centre: a sphere seen from the right camera, hit where |O + t D - C| = r.
    sphere = s3.Ellipsoid(centre, np.eye(3), np.array([r, r, r]))
    dx, dy = np.array([0.05]), np.array([-0.03])
    t, n, _, _ = sphere.intersect(1.0, dx, dy)
    p = np.array([1.0 + t[0] * dx[0], t[0] * dy[0], t[0]])
    assert np.linalg.norm(p - centre) == pytest.approx(r, abs=1e-9)
    # The background plane has the affine disparity it was built from.
    cam = s3.Camera(100.0, 50.0, 40.0)
    normal, c = s3.plane_from_disparity(cam, 5.0, 0.01, 0.02)
    plane = s3.Plane(np.zeros(3), normal=normal, c=c)
    xs, ys = np.array([10.0, 90.0]), np.array([5.0, 70.0])
    t, _, _, _ = plane.intersect(0.0, *cam.rays(xs, ys))
    np.testing.assert_allclose(cam.f / t, 5.0 + 0.01 * (xs - 50) + 0.02 * (ys - 40), rtol=1e-12)


def test_occlusions_exist_and_disparity_ranges_vary():
    maxima = []
    for i in range(4):
        pair = render_pair(np.random.default_rng(i), 120, 240, 40.0, 6)
        d = pair["disp_left"]
        maxima.append(d.max())
        assert d.max() <= 40.0 + 1e-3
        assert np.unique(np.round(d)).size > 3  # several depths
        assert not np.allclose(pair["final_left"], pair["left"])  # final pass is blurred
    assert max(maxima) - min(maxima) > 5


def test_deterministic_from_seed(tmp_path):
    kw = dict(height=40, width=80, train_pairs=4, test_pairs=1, progress=False)
    generate_sceneflow_sample(tmp_path / "a", seed=3, **kw)
    generate_sceneflow_sample(tmp_path / "b", seed=3, **kw)
    generate_sceneflow_sample(tmp_path / "c", seed=4, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 5 * 6 + 2  # per pair: 2 views x (clean, final, pfm); plus sample.json, stats.json
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    rel = next(f for f in files if f.suffix == ".pfm")
    assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()


def _signal_dispositions(job):
    import signal

    return {"term": signal.getsignal(signal.SIGTERM), "int": signal.getsignal(signal.SIGINT)}


def test_generation_workers_die_on_sigterm_and_leave_ctrl_c_to_the_parent(monkeypatch):
    """A parent with a Python SIGTERM handler (as every stereo-* app has) must not pass it on to its
    generation workers: the pool's terminate() would then run Python's exit cleanup in them, which can wait
    forever on a lock held at fork time."""
    import signal

    from stereo.data import synthetic

    monkeypatch.setattr(synthetic, "_make_pair", _signal_dispositions)  # forked workers see the patched module
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        seen = synthetic._run_jobs([()] * 4, workers=2, desc="", progress=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [{"term": signal.SIG_DFL, "int": signal.SIG_IGN}] * 4


def test_existing_folder_reused_or_refused(tmp_path):
    kw = dict(height=40, width=80, train_pairs=1, test_pairs=1, progress=False)
    generate_sceneflow_sample(tmp_path / "s", seed=1, **kw)
    stamp = (tmp_path / "s" / "sample.json").stat().st_mtime_ns
    generate_sceneflow_sample(tmp_path / "s", seed=1, **kw)  # same manifest: reused as is
    assert (tmp_path / "s" / "sample.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="not an identical generated sample"):
        generate_sceneflow_sample(tmp_path / "s", seed=2, **kw)
    generate_sceneflow_sample(tmp_path / "s", seed=2, replace=True, **kw)  # a generated sample: replaced
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["parameters"]["seed"] == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError):  # never someone else's folder
        generate_sceneflow_sample(tmp_path / "mine", seed=2, replace=True, **kw)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "user data"


def test_a_sample_made_by_other_generator_code_is_not_reused(tmp_path, monkeypatch):
    """Same parameters, different code: reusing the folder would hand out data this code does not make."""
    from stereo.data import synthetic

    kw = dict(height=40, width=80, train_pairs=2, test_pairs=1, seed=3, progress=False)
    generate_sceneflow_sample(tmp_path / "s", **kw)
    manifest = json.loads((tmp_path / "s" / "sample.json").read_text())
    render = synthetic.render_pair

    def brighter_final_pass(*args, **kwargs):  # a changed camera model: the clean pass is as before
        pair = render(*args, **kwargs)
        return {**pair, "final_left": np.clip(pair["final_left"] + 0.05, 0, 1)}

    monkeypatch.setattr(synthetic, "render_pair", brighter_final_pass)
    with pytest.raises(FileExistsError, match=r"frames_finalpass.*differs by more than 2 grey levels"):
        generate_sceneflow_sample(tmp_path / "s", **kw)
    assert json.loads((tmp_path / "s" / "sample.json").read_text()) == manifest  # refused: nothing touched
    generate_sceneflow_sample(tmp_path / "s", replace=True, **kw)  # made again with this code
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["files"] != manifest["files"]
    generate_sceneflow_sample(tmp_path / "s", **kw)  # and now reused
    monkeypatch.setattr(synthetic, "render_pair", render)
    with pytest.raises(FileExistsError, match="another version of the generator"):
        generate_sceneflow_sample(tmp_path / "s", **kw)


def test_union_prunes_rays_without_changing_hits():
    """A wheel meets each ray with only the parts whose bounding window holds it: the depths, normals and
    texture coordinates of every hit equal those of intersecting every part with every ray."""
    from stereo.data import scene3d as s3
    from stereo.data.synthetic import _STYLES, _wheel

    rng = np.random.default_rng(3)
    cam = s3.Camera(f=300.0, cx=120.0, cy=80.0)
    wheel = _wheel(rng, np.array([0.3, -0.1, 8.0]), s3.rotation(rng, 0.8), 2.0, 8.0 / 300.0, _STYLES[3])
    yy, xx = np.mgrid[0:160, 0:240].astype(np.float64)
    dx, dy = cam.rays(xx, yy)
    t, n, u, v = wheel.intersect(0.0, dx, dy)
    best = [np.full(dx.shape, np.inf), np.zeros(dx.shape + (3,)), np.zeros(dx.shape), np.zeros(dx.shape)]
    for part in wheel.parts:
        pt, pn, pu, pv = part.intersect(0.0, dx, dy)
        near = pt < best[0]
        best = [np.where(near, pt, best[0]), np.where(near[..., None], pn, best[1]),
                np.where(near, pu, best[2]), np.where(near, pv, best[3])]  # fmt: skip
    hit = np.isfinite(best[0])
    assert 0.05 < hit.mean() < 0.9  # the wheel fills part of the view: the pruning matters
    np.testing.assert_array_equal(t, best[0])
    for ours, full in zip((n, u, v), best[1:], strict=True):
        np.testing.assert_array_equal(ours[hit], full[hit])


@pytest.mark.slow
def test_generator_workers_exit_quietly_when_it_is_killed(tmp_path):
    """kill -9 of the generator: its workers die with it, without BrokenPipeError tracebacks."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    def alive(pid):  # a zombie (dead, not yet reaped by whoever adopted it) is not alive
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    log = tmp_path / "stderr.txt"
    args = [f"out={tmp_path / 's'}", "height=128", "width=256", "train_pairs=400", "test_pairs=0", "workers=2"]
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, str(REPO / "scripts/make_sceneflow_sample.py"), *args],
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        deadline, kids = time.time() + 120, []
        while time.time() < deadline and len(kids) < 2:
            kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            time.sleep(0.1)
        assert len(kids) == 2, "no worker processes to watch"
        time.sleep(2.0)  # workers busy with their pairs
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 30
        while time.time() < deadline and any(alive(k) for k in kids):
            time.sleep(0.1)
    assert not any(alive(k) for k in kids), "workers outlived the generator"
    time.sleep(0.5)
    text = log.read_text()
    assert "Traceback" not in text and "BrokenPipe" not in text, text[-2000:]


def test_generator_v4_integrates_each_pixel_and_keeps_the_centre_ground_truth(monkeypatch):
    """v4 renders 3 x 3 samples per pixel: its image is the block mean of that fine render, its disparity the
    centre sample's, which is the disparity of a render at the pixel centres (to rounding); both views stay
    photo-consistent; its photographs are the benchmark set only."""
    from stereo.data import synthetic as syn

    asked = []
    real = syn.photos
    monkeypatch.setattr(syn, "photos", lambda photo_set="train": asked.append(photo_set) or real(photo_set))
    rng = np.random.default_rng(5)
    cam = syn.s3.Camera(f=1.1 * 96, cx=47.5, cy=23.5)
    style = syn._STYLES[4]
    objects = [syn._background(rng, cam, 48, 96, 4.0, style)]
    objects += [syn._make_object(rng, cam, 48, 96, 4.0, 20.0, None, style) for _ in range(6)]
    light = np.array([0.3, -0.4, -1.0]) / np.linalg.norm([0.3, -0.4, -1.0])
    with syn.s3.explicit_products():
        image, disp, _ = syn._render_view(objects, cam, 48, 96, False, light, 3)
        coarse_image, coarse, _ = syn._render(objects, cam, 48, 96, False, light)
        fine = syn.s3.Camera(cam.f * 3, cam.cx * 3 + 1, cam.cy * 3 + 1)
        fine_image, _, _ = syn._render(objects, fine, 144, 288, False, light)
    assert np.abs(disp - coarse).max() < 1e-3
    np.testing.assert_allclose(image, fine_image.reshape(48, 3, 96, 3, 3).mean((1, 3)), atol=1e-5)
    assert np.abs(image - coarse_image).max() > 0.05  # edges and textures are integrated, not point-sampled
    assert asked and set(asked) == {"benchmark"}
    pair = render_pair(np.random.default_rng(6), 64, 128, 24, 6, version=4)
    left, right, d_left, d_right = pair["left"], pair["right"], pair["disp_left"], pair["disp_right"]
    xs = (np.arange(128)[None, :] - d_left).astype(np.float32)
    rows = np.repeat(np.arange(64)[:, None], 128, 1).astype(np.float32)
    warped = cv2.remap(right, xs, rows, cv2.INTER_LINEAR)
    x0 = np.clip(np.floor(xs).astype(int), 0, 127)
    same = (xs >= 1) & (np.abs(d_right[rows.astype(int), x0] - d_left) < 0.2)
    same = cv2.erode(same.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert same.mean() > 0.3 and np.median(np.abs(warped - left).max(2)[same]) < 0.02
    _assert_disparities_agree(d_left, d_right)


def test_explicit_products_equal_blas_products():
    from stereo.data import scene3d as s3

    g = np.random.default_rng(0)
    a, m, v = g.normal(size=(4, 5, 3)), g.normal(size=(3, 3)), g.normal(size=3)
    with s3.explicit_products():
        np.testing.assert_allclose(s3.mm(a, m), a @ m, rtol=0, atol=1e-12)
        np.testing.assert_allclose(s3.mm(a, v), a @ v, rtol=0, atol=1e-12)
    assert s3.mm(a, m) is not None and not s3._EXPLICIT[0]  # switched back after the block
