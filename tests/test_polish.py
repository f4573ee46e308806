"""polish=zncc: the classical sub-pixel step after any disparity map."""

import pytest
import torch
import torch.nn.functional as F

from stereo.models.polish import zncc_curve, zncc_polish
from stereo.models.refinement import warp_right_to_left


def _scene(seed=0, h=48, w=128):
    """A textured right view, its left view at a slanted sub-pixel disparity, and that disparity."""
    g = torch.Generator().manual_seed(seed)
    right = F.interpolate(torch.rand(1, 3, h // 2, w // 2, generator=g), (h, w), mode="bicubic", align_corners=False)
    right = right.clamp(0, 1)
    disp = (9.3 + 0.015 * torch.arange(w, dtype=torch.float32)).view(1, 1, w).expand(1, h, w).contiguous()
    left, _ = warp_right_to_left(right, disp)
    inner = torch.zeros(1, h, w, dtype=torch.bool)
    inner[:, 5:-5, 30:-5] = True  # away from the borders and from the left band without a match
    return left, right, disp, inner


def test_polish_recovers_a_known_subpixel_disparity_from_a_smooth_error():
    left, right, disp, inner = _scene()
    err = 0.9 * torch.sin(torch.arange(disp.shape[-1], dtype=torch.float32) / 15).view(1, 1, -1)
    start = disp + err
    out, moved = zncc_polish(left, right, start)
    assert moved[inner].float().mean() > 0.95
    before, after = (start - disp)[inner].abs().mean(), (out - disp)[inner].abs().mean()
    assert before > 0.5 and after < 0.05  # quarter-pixel candidates and a parabola: well under 1/8 px


def test_polish_is_invariant_to_gain_and_offset_between_the_views():
    left, right, disp, inner = _scene(1)
    start = disp + 0.6
    a, _ = zncc_polish(left, right, start)
    b, _ = zncc_polish(left * 0.6 + 0.2, right, start)
    assert (a - b)[inner].abs().max() < 1e-3


def test_polish_leaves_what_it_cannot_trust():
    left, right, disp, inner = _scene(2)
    far = disp + 3.0  # the optimum beyond the +-2 px searched: at the end of the range, not moved
    out, moved = zncc_polish(left, right, far)
    assert not moved[inner].any() and torch.equal(out, far)
    flat = torch.full_like(left, 0.5)  # no texture: nothing moves
    out, moved = zncc_polish(flat, flat, disp)
    assert not moved.any() and torch.equal(out, disp)
    noise = torch.rand(left.shape, generator=torch.Generator().manual_seed(3))  # unrelated views: low ZNCC
    _, moved = zncc_polish(noise, right, disp)
    assert moved[inner].float().mean() < 0.05


def test_zncc_curve_is_one_where_the_window_matches_exactly():
    left, right, disp, inner = _scene(4)
    grey = lambda x: x.mean(1, keepdim=True)  # noqa: E731
    curve, std, inside = zncc_curve(grey(left), grey(right), disp, torch.tensor([-1.0, 0.0, 1.0]), 3)
    assert curve.shape == (1, 3, *disp.shape[1:]) and std.shape == (1, 1, *disp.shape[1:])
    assert (curve[:, 1][inner] > 0.999).all() and (curve[:, 1][inner] > curve[:, 0][inner]).all()
    assert inside[inner].all() and not inside[:, :, :5].any()  # x - d < 0 at the left border


def test_polish_runtime_setting_applies_it_to_the_networks_answer():
    from stereo.config import load_config
    from stereo.models import build_model, run

    torch.manual_seed(0)
    model = build_model(load_config("model/ea_psmnet_light", ["max_disp=32"])).eval()
    left, right, _, _ = _scene(5, 64, 128)
    plain = run(model, left, right).disparity
    model.set_runtime(polish="zncc", polish_min_zncc=0.8)
    polished = run(model, left, right).disparity
    want, _ = zncc_polish(left, right, plain, min_zncc=0.8)
    assert torch.equal(polished, want) and not torch.equal(polished, plain)  # it moved some pixels
    with pytest.raises(Exception, match="polish"):
        model.set_runtime(polish="sharpen")
