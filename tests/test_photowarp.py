"""Generator v5 (photographs warped by known disparity): its geometry is exact and its views agree with it."""

import numpy as np
import pytest

pytest.importorskip("skimage")  # the segmentation of the photographs; the generate extra

from stereo.data import photowarp as pw  # noqa: E402
from stereo.data.occlusion import nonoccluded  # noqa: E402
from stereo.data.synthetic import photos, render_pair  # noqa: E402


def _photo(h=90, w=140, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    return np.clip(cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5) * 1.8 - 0.4, 0, 1)


def test_catmull_rom_reproduces_quadratics_and_the_samples():
    yy, xx = np.mgrid[0:20, 0:30].astype(np.float64)
    img = np.stack([0.3 * xx * xx - 2 * xx * yy + 5 * yy + 1, xx + 0.01 * yy * yy, np.ones_like(xx)], -1)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(2, 26, 500), rng.uniform(2, 16, 500)
    exact = np.stack([0.3 * x * x - 2 * x * y + 5 * y + 1, x + 0.01 * y * y, np.ones_like(x)], -1)
    np.testing.assert_allclose(pw._bicubic(img, x, y), exact, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pw._bicubic(img, xx, yy), img, rtol=0, atol=1e-12)  # at the pixel centres


def test_a_layers_left_position_solves_the_warp_equation_with_its_relief():
    rng = np.random.default_rng(2)
    grey = _photo()[..., 0].astype(np.float64)
    layer = pw._surface(rng, 90, 140, 20.0, None, pw._relief(rng, grey))
    assert np.abs(np.diff(layer.relief, axis=1)).max() <= 0.6 + 1e-9 and layer.relief.std() > 0.05
    xr, y = rng.uniform(0, 110, 2000), rng.uniform(0, 89, 2000)
    xl = layer.left_x(xr, y)
    np.testing.assert_allclose(xl - layer.disparity(xl, y), xr, rtol=0, atol=1e-8)


def test_the_views_agree_with_the_ground_truth_where_both_see_the_surface():
    rng = np.random.default_rng(3)
    pair = pw.render_photo_pair(rng, [_photo(120, 200)], 96, 160, 24, 4, samples=3)
    d, left, right = pair["disp_left"], pair["left"], pair["right"]
    assert d.shape == (96, 160) and d.min() > 0 and d.max() < 24
    visible = nonoccluded(d, pair["disp_right"])
    yy, xx = np.mgrid[0:96, 0:160].astype(np.float64)
    keep = visible & (xx - d > 3)
    keep[:3], keep[-3:] = False, False
    warped = pw._bicubic(right.astype(np.float64), xx - d, yy)
    err = np.abs(warped - left).mean(-1)[keep]
    assert keep.mean() > 0.5
    # Right resampled at x - d: the residual is interpolation error of two resamplings of one photograph.
    assert np.median(err) < 0.01 and np.mean(err < 0.05) > 0.95
    moved = np.abs(pw._bicubic(right.astype(np.float64), xx - d - 2, yy) - left).mean(-1)[keep]
    assert np.median(moved) > 3 * np.median(err)  # 2 px off the ground truth is visibly worse


def test_generator_v5_is_deterministic_and_uses_benchmark_photographs_only():
    a = render_pair(np.random.default_rng(4), 64, 128, 32, 4, version=5)
    b = render_pair(np.random.default_rng(4), 64, 128, 32, 4, version=5)
    assert set(a) == {"left", "right", "disp_left", "disp_right", "final_left", "final_right", "textureless"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["left"], a["final_left"])  # the camera model ran
    assert len(photos("benchmark")) == 5


@pytest.mark.parametrize(
    "version, photo_set, glossy",
    [(5, "benchmark", False), (6, "train", False), (7, "train", False), (9, "benchmark", True), (10, "train", True)],
)
def test_v5_warps_the_benchmark_photographs_and_v6_the_training_ones(version, photo_set, glossy, monkeypatch):
    """The benchmark versions (5, 9) never see the training photographs, the training ones (6, 7, 10) never the
    benchmark ones; v10 trains on v9's glossy surfaces."""
    seen = []
    real = pw.render_photo_pair

    def spy(rng, pool, *args, **kwargs):
        seen.append((pool, kwargs))
        return real(rng, pool, *args, **kwargs)

    monkeypatch.setattr(pw, "render_photo_pair", spy)
    pair = render_pair(np.random.default_rng(4), 64, 128, 32, 4, version=version)
    assert len(seen) == 1 and seen[0][0] is photos(photo_set)
    assert (seen[0][1]["glossy_share"] > 0) == glossy
    assert not {id(p) for p in photos("train")} & {id(p) for p in photos("benchmark")}
    assert pair["disp_left"].max() > 0


def test_v7_gives_a_third_of_its_pairs_v2s_blurred_and_noisy_final_pass(monkeypatch):
    """v7 = v6 with generator v2's final pass (defocus, motion blur, noise) for about a third of the pairs;
    v6 never takes it. Those pairs lose fine detail in the final pass; the clean pass is v6's renderer."""
    import cv2

    from stereo.data import synthetic

    taken = []
    real = synthetic._blur_and_noise

    def spy(rng, left, right):
        out = real(rng, left, right)
        taken.append((left, out[0]))
        return out

    monkeypatch.setattr(synthetic, "_blur_and_noise", spy)
    for seed in range(12):
        render_pair(np.random.default_rng(seed), 64, 128, 24, 3, version=6)
    assert taken == []
    for seed in range(12):
        render_pair(np.random.default_rng(seed), 64, 128, 24, 3, version=7)
    assert 1 <= len(taken) <= 8  # 12 draws at 1/3: outside this happens with probability < 1%

    def detail(img):  # mean |Laplacian| after a 1 px Gaussian, which leaves the blur and removes the pixel noise
        grey = cv2.GaussianBlur(img.mean(-1).astype(np.float32), (0, 0), 1.0)
        return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())

    assert all(detail(final) < detail(clean) for clean, final in taken)


def test_a_rigs_flaws_change_the_right_view_only(monkeypatch):
    """VERTICAL_PX moves the right view's rows (by at most that, not in the ground truth); GAIN_STD scales the
    surfaces' brightness in the right view. Neither touches the left view or the disparities."""
    args = ([_photo(120, 200)], 96, 160, 24, 4)
    plain = pw.render_photo_pair(np.random.default_rng(5), *args, samples=1)
    monkeypatch.setattr(pw, "VERTICAL_PX", 0.8)
    moved = pw.render_photo_pair(np.random.default_rng(5), *args, samples=1)
    monkeypatch.setattr(pw, "VERTICAL_PX", 0.0)
    monkeypatch.setattr(pw, "GAIN_STD", 0.05)
    gained = pw.render_photo_pair(np.random.default_rng(5), *args, samples=1)
    for pair in (moved, gained):
        for k in ("left", "disp_left", "textureless"):
            np.testing.assert_array_equal(pair[k], plain[k])
        assert not np.array_equal(pair["right"], plain["right"])
    d, left = plain["disp_left"], plain["left"].astype(np.float64)
    yy, xx = np.mgrid[0:96, 0:160].astype(np.float64)
    keep = nonoccluded(d, plain["disp_right"]) & (xx - d > 3)
    keep[:4], keep[-4:] = False, False
    shifts = np.round(np.arange(-1.2, 1.21, 0.1), 1)
    best = []
    for cols in (slice(0, 60), slice(100, 160)):  # an offset and a tilt: each side has its own best row shift
        k = keep[:, cols]
        err = [np.median(np.abs(pw._bicubic(moved["right"].astype(np.float64), xx - d, yy - s) - left)
                         .mean(-1)[:, cols][k]) for s in shifts]  # fmt: skip
        best.append(shifts[int(np.argmin(err))])
        assert abs(best[-1]) <= 0.8 + 0.1 and min(err) < 0.9 * err[len(shifts) // 2]
    assert best[0] != best[1]  # the rows' offset varies across the view
    ratio = (gained["right"] / np.maximum(plain["right"], 1e-3))[(plain["right"] > 0.1) & (gained["right"] < 0.99)]
    assert 0 < abs(np.median(ratio) - 1) < 4 * 0.05  # a brightness factor, of the size asked for


def test_a_scene_finer_than_the_views_keeps_the_ground_truth_exact():
    """scale=2 (generator v8): each view pixel integrates 2 x 2 photograph pixels. The left ground truth is the
    owning surface's disparity at the view pixel's centre (in view pixels), the right one agrees with it where
    both views see the surface, and the right view resampled there reproduces the left view far better than half
    a pixel off."""
    rng = np.random.default_rng(6)
    pair = pw.render_photo_pair(rng, [_photo(240, 400)], 96, 160, 24, 4, samples=3, scale=2)
    d, left, right = pair["disp_left"], pair["left"].astype(np.float64), pair["right"].astype(np.float64)
    assert d.shape == pair["disp_right"].shape == left.shape[:2] == (96, 160) and d.min() > 0 and d.max() < 24
    visible = nonoccluded(d, pair["disp_right"])
    yy, xx = np.mgrid[0:96, 0:160].astype(np.float64)
    keep = visible & (xx - d > 3)
    keep[:3], keep[-3:] = False, False
    assert keep.mean() > 0.5

    def residual(shift):
        return np.median(np.abs(pw._bicubic(right, xx - d - shift, yy) - left).mean(-1)[keep])

    assert residual(0) < 0.01 and residual(0.5) > 3 * residual(0) and residual(-0.5) > 3 * residual(0)


def test_the_scene_scale_reduces_by_block_means_and_centres_the_truth():
    """A scene of one plane (no layers in front): the left truth at each view pixel is the plane at the centre of
    its 2 x 2 block of scene pixels, halved; the views are the block means of the scene's render."""
    rng = np.random.default_rng(7)
    photo = _photo(240, 400)
    pair = pw.render_photo_pair(rng, [photo], 48, 80, 16, 0, samples=1, scale=2)
    fine = pw.render_photo_pair(np.random.default_rng(7), [photo], 96, 160, 32, 0, samples=1)
    # The same draws at scale 1 and twice the size: the same plane in scene pixels.
    centre = 0.25 * (fine["disp_left"][0::2, 0::2] + fine["disp_left"][1::2, 0::2] + fine["disp_left"][0::2, 1::2]
                     + fine["disp_left"][1::2, 1::2])  # fmt: skip
    np.testing.assert_allclose(pair["disp_left"], centre / 2, atol=2e-3)  # a plane's mean is its centre value
    np.testing.assert_allclose(pair["left"], fine["left"].reshape(48, 2, 80, 2, 3).mean((1, 3)), atol=1e-6)


def test_generator_v8_is_deterministic_with_its_camera_at_the_scenes_size(monkeypatch):
    from stereo.data import synthetic

    sizes = []
    real = synthetic._rig

    def spy(rng, left, right):
        sizes.append(left.shape[:2])
        return real(rng, left, right)

    monkeypatch.setattr(synthetic, "_rig", spy)
    a = render_pair(np.random.default_rng(4), 64, 128, 24, 4, version=8)
    b = render_pair(np.random.default_rng(4), 64, 128, 24, 4, version=8)
    assert set(a) == {"left", "right", "disp_left", "disp_right", "final_left", "final_right", "textureless"}
    for k in a:
        assert a[k].shape[:2] == (64, 128)
        np.testing.assert_array_equal(a[k], b[k])
    assert sizes == [(128, 256), (128, 256)]  # the camera ran on the scene (2x), then the views were reduced
    assert not np.array_equal(a["left"], a["final_left"])


def test_weak_surfaces_lose_their_fine_texture_but_keep_their_shading():
    rng = np.random.default_rng(8)
    tex = _photo(120, 200)
    plain, weak = pw._weaken(rng, [tex], 0.0, 4.0)[0], pw._weaken(rng, [tex], 1.0, 4.0)[0]
    import cv2

    detail = [float(np.std(t - cv2.GaussianBlur(t, (0, 0), 4.0))) for t in (plain, weak)]
    assert plain is tex and 0.02 < detail[1] / detail[0] < 0.25
    np.testing.assert_allclose(cv2.GaussianBlur(weak, (0, 0), 8.0), cv2.GaussianBlur(tex, (0, 0), 8.0), atol=0.02)


def test_weak_surfaces_are_weak_in_both_views():
    """weak_share=1: every surface's texture loses most of its contrast, in the left view as in the right, so the
    views still agree at the ground truth (and the left view has less fine texture than without)."""
    args = ([_photo(120, 200)], 96, 160, 24, 4)
    plain = pw.render_photo_pair(np.random.default_rng(9), *args, samples=1)
    pair = pw.render_photo_pair(np.random.default_rng(9), *args, samples=1, weak_share=1.0)
    np.testing.assert_array_equal(pair["disp_left"], plain["disp_left"])
    d, left, right = pair["disp_left"], pair["left"].astype(np.float64), pair["right"].astype(np.float64)
    yy, xx = np.mgrid[0:96, 0:160].astype(np.float64)
    keep = nonoccluded(d, pair["disp_right"]) & (xx - d > 3)
    keep[:3], keep[-3:] = False, False

    def residual(shift):
        return np.median(np.abs(pw._bicubic(right, xx - d - shift, yy) - left).mean(-1)[keep])

    assert residual(0.5) > 3 * residual(0)
    import cv2

    def detail(img):
        return float(np.std(img - cv2.GaussianBlur(img, (0, 0), 4.0)))

    assert detail(pair["left"]) < 0.3 * detail(plain["left"]) and detail(pair["right"]) < 0.3 * detail(plain["right"])


def test_a_glossy_surfaces_reflection_slides_by_the_difference_of_the_two_disparities(monkeypatch):
    """A reflection at disparity k d over a surface at d: the right view sees it (1 - k) d further left, in the
    left view's coordinates; each surface has its own reflection; share 0 leaves every surface matte."""
    monkeypatch.setattr(pw, "REFLECTANCE", (1.0, 1.0))  # all reflection: the textures are the reflected scene
    monkeypatch.setattr(pw, "REFLECTION_DEPTH", (0.25, 0.25))
    flat = [pw._Layer(c, 0, 0, 0, 0, 40, 30, 80, 60) for c in (4.0, 8.0)]
    tex = _photo(60, 80)
    order = [(flat[0], np.ones((60, 80), bool)), (flat[1], np.zeros((60, 80), bool))]
    left, right = pw._gloss(np.random.default_rng(3), order, [tex, tex], 1.0, 1)
    assert set(left) == {0, 1}
    for i, slide in ((0, 3), (1, 6)):  # (1 - 0.25) * 4 and * 8 px
        e_left, e_right = left[i][..., 0], right[i][..., 0]
        assert np.allclose(left[i], e_left[..., None]) and e_left.std() > 0.1  # grey, bright and dark regions
        np.testing.assert_allclose(e_right[:, slide:], e_left[:, :-slide], rtol=0, atol=1e-5)
    assert np.abs(left[0] - left[1]).mean() > 0.1
    assert pw._gloss(np.random.default_rng(3), order, [tex, tex], 0.0, 1) == ({}, [tex, tex])


def test_glossy_surfaces_differ_between_the_views_where_the_matte_ones_agree():
    args = ([photos("benchmark")[2]], 96, 160, 24, 6)  # a photograph: regions large enough to become layers
    plain = pw.render_photo_pair(np.random.default_rng(3), *args, samples=1)
    pair = pw.render_photo_pair(np.random.default_rng(3), *args, samples=1, glossy_share=0.5)
    np.testing.assert_array_equal(pair["disp_left"], plain["disp_left"])  # the same scene
    glossy = np.abs(pair["left"] - plain["left"]).max(-1) > 0
    assert 0.05 < glossy.mean() < 0.95  # some surfaces glossy, others matte
    d = pair["disp_left"]
    yy, xx = np.mgrid[0:96, 0:160].astype(np.float64)
    keep = nonoccluded(d, pair["disp_right"]) & (xx - d > 3)
    keep[:3], keep[-3:] = False, False

    def residual(p, where):
        err = np.abs(pw._bicubic(p["right"].astype(np.float64), xx - d, yy) - p["left"]).mean(-1)
        return float(np.median(err[keep & where]))

    import cv2

    # Away from the glossy surfaces (in the left view; the right view's kernel may still reach one: a few %).
    matte = cv2.dilate(glossy.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert residual(pair, matte) == pytest.approx(residual(plain, matte), rel=0.1)
    assert residual(pair, glossy) > 5 * residual(plain, glossy)
