"""The refinement (model.refine): identity when untrained, gradients right, none = PSMNet unchanged."""

import pytest
import torch

from stereo.config import load_config, to_plain
from stereo.errors import CheckpointError, ConfigError
from stereo.models import build_model
from stereo.models.refinement import (
    MODES_RADIUS,
    PHOTOMETRIC_OFFSETS,
    ModesRefinement,
    NoRefinement,
    build_refinement,
    warp_right_to_left,
)
from stereo.models.regression import regress_modes, soft_argmin, upsample_regress, upsample_regress_modes


def _model(refine, seed=0):
    cfg = load_config("train", ["model=ea_psmnet_light", "model.max_disp=32", f"model.refine={refine}"])
    torch.manual_seed(seed)
    return build_model(cfg.model)


def test_untrained_refinement_returns_its_input_and_trains():
    ref = ModesRefinement(channels=4, dilations=(1, 2))
    disp, img, right, local, mass = _modes_inputs(0)
    assert torch.equal(ref(disp, img, right, local, mass), disp)  # zero-initialised head: exactly the input
    ref(disp, img, right, local, mass).sum().backward()
    assert ref.head.weight.grad.abs().sum() > 0  # and it can learn from there


def test_warp_samples_the_right_image_at_x_minus_d_with_linear_interpolation():
    torch.manual_seed(2)
    right = torch.rand(1, 2, 3, 9, dtype=torch.float64)
    disp = torch.full((1, 3, 9), 2.25, dtype=torch.float64)
    disp[0, 1] = torch.linspace(0, 4, 9, dtype=torch.float64)  # a row of varying disparities
    warped, inside = warp_right_to_left(right, disp)
    for y in range(3):
        for x in range(9):
            src = x - float(disp[0, y, x])
            if src < 0:
                assert inside[0, 0, y, x] == 0
                continue
            x0, f = int(src), src - int(src)
            x1 = min(x0 + 1, 8)
            expect = (1 - f) * right[0, :, y, x0] + f * right[0, :, y, x1]
            assert inside[0, 0, y, x] == 1
            assert torch.allclose(warped[0, :, y, x], expect, atol=1e-12)


def test_the_traced_warp_for_onnx_gathers_the_same_samples_as_grid_sample():
    """Traced for export, the warp gathers the two nearest columns itself (ONNX Runtime's GridSample is slow on
    the CPU): equal to the eager warp in float64, at the traced size and another, borders and beyond included."""
    g = torch.Generator().manual_seed(4)

    def views(w):
        right = torch.rand(2, 5, 7, w, generator=g, dtype=torch.float64)
        disp = (w + 8) * torch.rand(2, 7, w, generator=g, dtype=torch.float64) - 4  # inside, beyond either border
        disp[0, 0, :4] = torch.tensor([0.0, 1.0, 2.5, w - 1.0], dtype=torch.float64)  # whole pixels, the last column
        return right, disp

    traced = torch.jit.trace(warp_right_to_left, views(31), check_trace=False)
    assert "aten::gather" in str(traced.graph) and "grid_sampler" not in str(traced.graph)
    for w in (31, 45):
        right, disp = views(w)
        for got, want in zip(traced(right, disp), warp_right_to_left(right, disp), strict=True):
            assert got.shape == want.shape and torch.allclose(got, want, atol=1e-12), w


def test_refinement_sees_a_zero_photometric_error_at_the_true_disparity():
    torch.manual_seed(3)
    right = torch.rand(1, 3, 8, 24)
    left = torch.roll(right, 3, dims=-1)  # left(x) = right(x - 3): disparity 3 everywhere
    warped, inside = warp_right_to_left(right, torch.full((1, 8, 24), 3.0))
    assert torch.allclose((left - warped) * inside, torch.zeros_like(left), atol=1e-6)
    assert inside[..., :3].sum() == 0 and inside[..., 3:].all()
    ref = ModesRefinement(channels=4, dilations=(1, 2))
    three = torch.full((1, 8, 24), 3.0)
    assert torch.equal(ref(three, left, right, three + 1, torch.ones_like(three)), three)
    # The local cost curve (one channel per offset, after image, disparity and signed error) is zero at
    # offset 0 and positive at every other offset, where the match is inside the right image; the windowed
    # estimate 1 px off shows as its offset / MODES_RADIUS and a positive colour error.
    x = ref.inputs(three, left, right, three + 1, torch.ones_like(three))
    n = len(PHOTOMETRIC_OFFSETS)
    assert x.shape == (1, 4 + 3 + n + 3, 8, 24)
    curve = x[0, 7 : 7 + n, :, 6:]
    zero = PHOTOMETRIC_OFFSETS.index(0.0)
    assert curve[zero].abs().max() < 1e-6
    assert all((curve[i] > 1e-3).float().mean() > 0.9 for i in range(n) if i != zero)
    assert torch.allclose(x[0, 7 + n], torch.full((8, 24), 1 / MODES_RADIUS))
    assert torch.equal(x[0, 8 + n], torch.ones(8, 24)) and (x[0, 9 + n, :, 6:] > 1e-3).float().mean() > 0.9


def test_refine_none_is_psmnet_and_refined_starts_equal():
    plain, refined = _model("none"), _model("modes")
    assert isinstance(plain.refinement, NoRefinement) and not plain.refinement.refines and refined.refinement.refines
    assert not any(k.startswith("refinement") for k in plain.state_dict())
    assert any(k.startswith("refinement") for k in refined.state_dict())
    missing = refined.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("refinement") for k in missing)
    left, right = torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        for m in (plain, refined):
            m.eval()
        # untrained refinement = identity
        assert torch.equal(plain.infer(left, right).disparity, refined.infer(left, right).disparity)
        refined.train(), plain.train()
        heads_r, heads_p = refined(left, right).heads, plain(left, right).heads
    assert len(heads_r) == len(heads_p) == 2
    for a, b in zip(heads_r, heads_p, strict=True):
        assert a.shape == (2, 64, 128) and torch.allclose(a, b)


def test_unknown_refine_kind_is_one_clear_error():
    with pytest.raises(ConfigError, match="refine"):
        build_model({"arch": "psmnet", "max_disp": 32, "refine": "convexx"})
    with pytest.raises(ConfigError, match="model.refine must be one of none, modes, got 'warp'"):
        build_refinement("warp", 32)


def test_init_from_starts_from_the_weights_and_may_add_the_refinement(checkpoint, sample_root, tmp_path):
    from stereo.checkpoint import load_checkpoint
    from stereo.train import Trainer
    from tests.conftest import make_tiny_cfg

    saved = load_checkpoint(checkpoint)["model"]
    same = Trainer(make_tiny_cfg(sample_root, init_from=str(checkpoint)), tmp_path / "a").model.state_dict()
    assert all(torch.equal(same[k].cpu(), v) for k, v in saved.items())
    refined = Trainer(make_tiny_cfg(sample_root, "model.refine=modes", init_from=str(checkpoint)), tmp_path / "b")
    state = refined.model.state_dict()
    assert all(torch.equal(state[k].cpu(), v) for k, v in saved.items())
    assert torch.count_nonzero(state["refinement.head.weight"]) == 0  # the identity it starts as
    assert state["refinement.stem.weight"].shape[0] == 16
    narrow = Trainer(
        make_tiny_cfg(sample_root, "model.refine=modes", "model.refine_channels=6", init_from=str(checkpoint)),
        tmp_path / "n",
    ).model.state_dict()
    assert narrow["refinement.stem.weight"].shape[0] == 6 and narrow["refinement.head.weight"].shape[1] == 6
    assert all(torch.equal(narrow[k].cpu(), v) for k, v in saved.items())
    with pytest.raises(CheckpointError, match=r"init_from needs the same architecture.*max_disp: 32 -> 48"):
        Trainer(make_tiny_cfg(sample_root, "model.max_disp=48", init_from=str(checkpoint)), tmp_path / "c")
    # Weights with a refinement into a model without one: refused, with the key that keeps it.
    torch.save({"model": state, "model_config": to_plain(refined.model.config), "step": 0}, tmp_path / "r.pt")
    with pytest.raises(CheckpointError, match=r"refine: 'modes' -> 'none'.*add model.refine=modes"):
        Trainer(make_tiny_cfg(sample_root, init_from=str(tmp_path / "r.pt")), tmp_path / "d")


def test_regress_modes_is_the_soft_argmin_the_windowed_one_and_the_window_mass():
    torch.manual_seed(5)
    cost = torch.randn(2, 40, 3, 4, dtype=torch.float64) * 3
    cost[0, 30, 1, 2] += 12  # a second, sharp mode far from the rest
    prob = torch.softmax(cost, 1)
    soft, local, mass = regress_modes(prob, 4.0)
    assert torch.allclose(soft, soft_argmin(cost), atol=1e-12)
    assert torch.allclose(local, soft_argmin(cost, radius=4.0), atol=1e-12)
    for b in range(2):
        for y in range(3):
            for x in range(4):
                p = prob[b, :, y, x]
                k = int(p.argmax())
                lo, hi = max(0, k - 4), min(39, k + 4)
                assert abs(float(mass[b, y, x]) - float(p[lo : hi + 1].sum())) < 1e-12
    assert abs(float(local[0, 1, 2]) - 30) < 1 and mass[0, 1, 2] > 0.99  # on the sharp mode


def test_upsample_regress_modes_equals_both_regressions_chunked_or_not():
    torch.manual_seed(6)
    cost = torch.randn(2, 1, 8, 5, 6)
    size = (32, 20, 24)
    soft, local, mass, conf = upsample_regress_modes(cost, size, MODES_RADIUS, confidence=True)
    ref_soft, ref_conf = upsample_regress(cost, size, confidence=True)
    assert torch.allclose(soft, ref_soft, atol=1e-5) and torch.allclose(conf, ref_conf, atol=1e-6)
    assert torch.allclose(local, upsample_regress(cost, size, radius=MODES_RADIUS), atol=1e-5)
    assert ((mass > 0) & (mass <= 1)).all()
    chunked = upsample_regress_modes(cost, size, MODES_RADIUS, chunk_rows=7, confidence=True)
    for a, b in zip(chunked, (soft, local, mass, conf), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    half = upsample_regress_modes(cost.bfloat16(), size, MODES_RADIUS)  # autocast's cost: regressed in fp32
    assert half[0].dtype == torch.float32


@pytest.mark.parametrize("rows", [None, 7])
def test_inference_regression_equals_the_training_paths_in_float64(rows):
    # Inference takes its own path (disparities last, gathered windows, one reused buffer); the training path,
    # with gradients, is the definition it must equal.
    torch.manual_seed(8)
    cost = torch.randn(2, 1, 8, 5, 6, dtype=torch.float64) * 4
    cost[0, 0, 6, 2, 3] += 30  # a sharp second mode
    size = (32, 20, 24)
    with torch.inference_mode():
        fast = upsample_regress_modes(cost, size, MODES_RADIUS, rows, confidence=True)
        plain = upsample_regress(cost, size, rows, confidence=True)
        windowed = upsample_regress(cost, size, rows, confidence=True, radius=2.5)
    ref = upsample_regress_modes(cost, size, MODES_RADIUS, rows, confidence=True)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    for a, b in zip(plain, upsample_regress(cost, size, rows, confidence=True), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    for a, b in zip(windowed, upsample_regress(cost, size, rows, confidence=True, radius=2.5), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert not torch.equal(fast[0], fast[1])  # the windowed estimate differs somewhere: the comparison can fail


def test_inference_regression_takes_the_first_of_tied_modes():
    cost = torch.zeros(1, 1, 4, 1, 1, dtype=torch.float64)
    cost[0, 0, 0] = cost[0, 0, 3] = 50.0  # two equal, far apart peaks: the window sits on the first
    with torch.inference_mode():
        _, local, mass = upsample_regress_modes(cost, (16, 1, 1), 2.0)
    _, ref_local, ref_mass = upsample_regress_modes(cost, (16, 1, 1), 2.0)
    assert float(local) < 3 and torch.equal(local, ref_local) and torch.allclose(mass, ref_mass)


def _infer(model, left, right):
    return model.infer(left, right).disparity


def _modes_inputs(seed, dtype=torch.float32):
    torch.manual_seed(seed)
    disp = torch.rand(1, 6, 9, dtype=dtype) * 3 + 1.3
    local = disp + torch.rand(1, 6, 9, dtype=dtype) * 2 - 1
    mass = torch.rand(1, 6, 9, dtype=dtype)
    img, right = torch.randn(1, 3, 6, 9, dtype=dtype), torch.randn(1, 3, 6, 9, dtype=dtype)
    return disp, img, right, local, mass


def test_modes_refinement_starts_as_the_soft_argmin_and_its_gate_reaches_the_windowed_estimate():
    ref = ModesRefinement(channels=4, dilations=(1, 2))
    disp, img, right, local, mass = _modes_inputs(7)
    assert torch.equal(ref(disp, img, right, local, mass), disp)  # zero head: gate 0, residual 0
    assert ref.inputs(disp, img, right, local, mass).shape == (1, 4 + 3 + len(PHOTOMETRIC_OFFSETS) + 3, 6, 9)
    with torch.no_grad():
        ref.head.bias[1] = 1.0  # gate 1 everywhere, residual 0
    assert torch.allclose(ref(disp, img, right, local, mass), local.clamp(min=0), atol=1e-6)
    with torch.no_grad():
        ref.head.bias[1] = 0.25
    assert torch.allclose(ref(disp, img, right, local, mass), disp + 0.25 * (local - disp), atol=1e-6)


def test_modes_refinement_gradients_match_finite_differences():
    ref = ModesRefinement(channels=3, dilations=(1, 2)).double()
    torch.nn.init.normal_(ref.head.weight, std=0.02)
    with torch.no_grad():
        ref.head.bias[1] = 0.5  # the gate inside (0, 1), away from the clamp's kinks
    inputs = [t.requires_grad_() for t in _modes_inputs(8, torch.float64)]
    assert torch.autograd.gradcheck(ref, tuple(inputs), eps=1e-6, atol=1e-5)


def test_modes_refinement_runs_under_bf16_autocast_in_fp32():
    ref = ModesRefinement(channels=4, dilations=(1, 2))
    torch.nn.init.normal_(ref.head.weight, std=0.05)
    disp, img, right, local, mass = _modes_inputs(9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ref(disp.bfloat16(), img.bfloat16(), right.bfloat16(), local, mass)
    assert out.dtype == torch.float32
    expect = ref(disp.bfloat16().float(), img.bfloat16().float(), right.bfloat16().float(), local, mass)
    assert torch.allclose(out, expect, atol=1e-5)


def test_modes_model_early_exit_and_its_refusals():
    model = _model("modes").eval()
    torch.nn.init.normal_(model.refinement.head.weight, std=0.05)
    left, right = torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        whole = model.infer(left, right, confidence=True)
        model.set_runtime(early_exit="head", exit_head=2)  # every image to the last head, one by one
        by_image = model.infer(left, right, confidence=True)
    whole, conf, by_image, conf_b = whole.disparity, whole.confidence, by_image.disparity, by_image.confidence
    assert torch.allclose(whole, by_image, atol=1e-4) and torch.allclose(conf, conf_b, atol=1e-5)
    with pytest.raises(ConfigError, match="regression=local.*refine=modes"):
        model.set_runtime(regression="local")


def test_refinement_false_answers_with_the_network_alone_and_allows_regression_local():
    plain, refined = _model("none"), _model("modes")
    refined.load_state_dict(plain.state_dict(), strict=False)  # the same network under both
    torch.nn.init.normal_(refined.refinement.head.weight, std=0.05)
    plain.eval(), refined.eval()
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        assert not torch.allclose(_infer(refined, left, right), _infer(plain, left, right), atol=1e-3)  # it acts
        refined.set_runtime(refinement=False)
        soft = _infer(refined, left, right)
        assert torch.equal(soft, _infer(plain, left, right))
        refined.set_runtime(regression="local")  # allowed once the refinement is off
        plain.set_runtime(regression="local")
        local = _infer(refined, left, right)
        assert torch.equal(local, _infer(plain, left, right)) and not torch.allclose(local, soft, atol=1e-3)
    with pytest.raises(ConfigError, match="refinement=false"):
        refined.set_runtime(refinement=True)


def test_loading_weights_with_a_refused_runtime_names_the_file_and_the_way_out(tmp_path):
    from stereo.checkpoint import load_network

    model = _model("modes")
    torch.save({"model": model.state_dict(), "model_config": to_plain(model.config), "step": 0}, tmp_path / "m.pt")
    with pytest.raises(ConfigError, match=r"m\.pt: regression=local with model\.refine=modes.*refinement=false") as e:
        load_network(tmp_path / "m.pt", torch.device("cpu"), {"regression": "local"})
    assert "cannot be built" not in str(e.value)
    loaded, _ = load_network(tmp_path / "m.pt", torch.device("cpu"), {"regression": "local", "refinement": False})
    assert loaded.runtime.regression == "local" and not loaded.runtime.refinement
