import weakref

import pytest
import torch
import torch.nn.functional as F

from stereo.config import load_config
from stereo.errors import ConfigError
from stereo.models import build_model, configure_runtime, count_parameters, run
from stereo.models.cost_volume import concat_volume, gwc_volume
from stereo.models.output import StereoOutput, TrainingOutput
from stereo.models.regression import soft_argmin, upsample_regress


def _disparity(model, left, right):
    """The (B, H, W) disparity of ``run`` for (B, 3, H, W) images of any size."""
    return run(model, left, right).disparity


def tiny(attention_kind="efficient", normalization="softmax", **over):
    cfg = load_config("model/ea_psmnet_light")
    cfg.max_disp = 32
    cfg.feature.attention[0].kind = attention_kind
    cfg.feature.attention[0].normalization = normalization
    for k, v in over.items():
        cfg[k] = v
    return cfg


def test_psmnet_parameter_count_matches_original():
    assert count_parameters(build_model(load_config("model/psmnet"))) == 5_224_768
    ea = build_model(load_config("model/ea_psmnet"))
    assert count_parameters(ea) - 5_224_768 == (128 * 64 + 64) * 2 + (128 * 128 + 128) * 2
    assert ea.feature_extraction.attention_positions == ["layer4"]


def test_output_shapes_in_both_modes():
    torch.manual_seed(0)
    model = build_model(tiny())
    x = torch.rand(2, 3, 64, 96)
    outs = model.train()(x, x)
    assert isinstance(outs, TrainingOutput) and len(outs.heads) == 2
    assert all(o.shape == (2, 64, 96) for o in outs.heads)
    with pytest.raises(RuntimeError, match="eval mode"):
        model.infer(x, x)
    model.eval()
    with torch.no_grad():
        result = model.infer(x, x)
    out = result.disparity
    assert isinstance(result, StereoOutput) and result.confidence is None and result.heads == [2, 2]
    assert out.shape == (2, 64, 96)
    assert (out >= 0).all() and (out <= 31).all()  # soft-argmin stays within [0, D - 1]


def test_channels_last_feature_extractor_gives_the_same_disparities_and_gradients():
    # runtime channels_last (the default): weights and inputs of the 2-D part in NHWC, numbers unchanged.
    torch.manual_seed(3)
    model = build_model(tiny(), {"channels_last": False})
    x, y = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    model.train()
    ref_heads = model.forward_train(x, y).heads
    ref_grad = torch.autograd.grad(ref_heads[-1].sum(), model.feature_extraction.firstconv[0][0].weight)[0]
    model.eval()
    with torch.no_grad():
        ref = model.infer(x, y).disparity
    configure_runtime(model, {"channels_last": True})
    conv = model.feature_extraction.layer1[0].conv1[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(model.infer(x, y).disparity, ref, rtol=0, atol=1e-4)
    model.train()
    heads = model.forward_train(x, y).heads
    grad = torch.autograd.grad(heads[-1].sum(), model.feature_extraction.firstconv[0][0].weight)[0]
    torch.testing.assert_close(heads[-1], ref_heads[-1], rtol=0, atol=1e-4)
    # In fp32 the gradient is only as close as oneDNN's kernels make it: on an AVX2-only AMD EPYC its
    # channels-last weight gradients differed from the float64 truth by 0.3% of the largest element (NCHW:
    # 1e-5). A layout error would be of the gradient's own size, so 2% of it still catches one...
    scale = ref_grad.abs().max().item()
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0.02 * scale)
    # ...and in float64 the layout changes nothing but rounding.
    model.double()
    configure_runtime(model, {"channels_last": False})
    x64, y64 = x.double(), y.double()
    nchw = torch.autograd.grad(
        model.forward_train(x64, y64).heads[-1].sum(), model.feature_extraction.firstconv[0][0].weight
    )[0]
    configure_runtime(model, {"channels_last": True})
    nhwc = torch.autograd.grad(
        model.forward_train(x64, y64).heads[-1].sum(), model.feature_extraction.firstconv[0][0].weight
    )[0]
    torch.testing.assert_close(nhwc, nchw, rtol=0, atol=1e-9 * scale)


def test_downsample_8_runs_at_an_eighth_with_the_same_weights_and_bands_equal_the_frame():
    torch.manual_seed(4)
    fast = build_model(load_config("model/ea_psmnet_fast"))
    light = build_model(load_config("model/ea_psmnet_light"), {})
    assert fast.size_divisor == 32 and fast.downsample == 8
    network = {k: v.shape for k, v in fast.state_dict().items() if not k.startswith("refinement.")}
    assert network == {k: v.shape for k, v in light.state_dict().items() if not k.startswith("refinement.")}
    assert fast.state_dict()["refinement.stem.weight"].shape[0] == 8  # model.refine_channels
    x, y = torch.rand(2, 3, 128, 256), torch.rand(2, 3, 128, 256)
    with torch.no_grad():
        fl, _ = fast.eval().features(x, y)
        assert fl.shape[-2:] == (16, 32)  # 1/8
        assert fast.volume_of(fl, fl).shape[2] == 128 // 8
    heads = fast.train().forward_train(x, y).heads
    assert [h.shape for h in heads] == [(2, 128, 256)] * 2
    fast.eval()
    x, y = torch.rand(1, 3, 1024, 128), torch.rand(1, 3, 1024, 128)
    with torch.inference_mode():
        whole = fast.infer(x, y).disparity
        rows = 100  # of the 128 feature rows: the 3-D part runs in bands with halos
        budget = (fast._full_resolution_bytes(1, 128, 16) + rows * fast._row_bytes(1, 16)) / 2**30
        configure_runtime(fast, {"memory_budget_gb": budget})
        banded = fast.infer(x, y)
    assert banded.bands > 1
    torch.testing.assert_close(banded.disparity, whole, rtol=0, atol=1e-4)
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_model(load_config("model/ea_psmnet_fast", ["max_disp=112"]))


@pytest.mark.parametrize("refine", ["none", "modes"])
def test_the_fast_model_fine_tunes_from_the_shipped_weights_without_their_refinement(refine):
    """Stage 1 (refine=none) drops the shipped refinement; a refinement of the new resolution, of any width,
    starts as the identity instead of the shipped one (made for a 1/4 volume, 16 channels wide)."""
    from stereo.checkpoint import init_weights, load_checkpoint
    from stereo.weights import resolve_checkpoint

    cfg = load_config("model/ea_psmnet_fast", [f"refine={refine}"])
    fast = build_model(cfg)
    path = resolve_checkpoint("shipped")
    kept = init_weights(fast, path, cfg)
    shipped = load_checkpoint(path)["model"]
    own = [k for k in fast.state_dict() if k.startswith("refinement.")]
    assert kept == own and (own == []) == (refine == "none")
    for k, v in fast.state_dict().items():
        if k.startswith("refinement.head."):
            assert torch.count_nonzero(v) == 0
        elif k not in own:
            torch.testing.assert_close(v, shipped[k], rtol=0, atol=0)
    assert any(k.startswith("refinement.") for k in shipped)


def test_gradients_reach_every_parameter():
    torch.manual_seed(1)
    model = build_model(tiny()).train()
    left, right = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)  # batch 2: BatchNorm on 1x1 pools
    sum(o.mean() for o in model.forward_train(left, right).heads).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("size", [(75, 124), (50, 74), (17, 33)])
def test_run_any_size(size):
    torch.manual_seed(2)
    model = build_model(tiny()).train()
    left, right = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    disp = _disparity(model, left, right)
    assert disp.shape == (2, *size)
    assert model.training  # mode restored
    single = _disparity(model, left[:1], right[:1])  # a batch of one: the same answer
    torch.testing.assert_close(single[0], disp[0], rtol=1e-4, atol=1e-4)


def test_run_full_scene_flow_sizes_light_model():
    model = build_model(load_config("model/ea_psmnet_light"))
    disp = _disparity(model, torch.rand(1, 3, 375, 1242), torch.rand(1, 3, 375, 1242))
    assert disp.shape == (1, 375, 1242) and torch.isfinite(disp).all()


def test_scaling_efficient_and_dot_product_networks_agree(device):
    torch.manual_seed(3)
    eff = build_model(tiny("efficient", "scaling")).double().eval().to(device)
    dot = build_model(tiny("dot_product", "scaling")).double().eval().to(device)
    dot.load_state_dict(eff.state_dict())
    x1, x2 = (torch.rand(1, 3, 64, 96, dtype=torch.float64).to(device) for _ in range(2))
    with torch.no_grad():
        a, b = eff.infer(x1, x2).disparity, dot.infer(x1, x2).disparity
        plain = build_model(tiny("none")).double().eval().to(device)
        plain.load_state_dict(eff.state_dict(), strict=False)
        c = plain.infer(x1, x2).disparity
    assert a.device.type == device
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert (a - c).abs().max() > 1e-6  # the attention actually changes the output


def test_deterministic_with_seed():
    def run():
        torch.manual_seed(4)
        model = build_model(tiny()).train()
        x = torch.rand(2, 3, 64, 64)
        return model(x, x.flip(-1)).heads[-1]

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)


def test_bf16_autocast_forward_is_finite(device):
    torch.manual_seed(5)
    model = build_model(tiny()).eval().to(device)
    x = torch.rand(1, 3, 64, 64, device=device)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
        out = model.infer(x, x).disparity
    assert torch.isfinite(out).all() and out.device.type == device


def test_chunked_eval_upsampling_equals_trilinear():
    torch.manual_seed(6)
    cost = torch.randn(2, 1, 8, 9, 13, dtype=torch.float64)
    ref = soft_argmin(F.interpolate(cost, (32, 36, 52), mode="trilinear", align_corners=False).squeeze(1))
    for rows in (1, 7, 64):
        torch.testing.assert_close(upsample_regress(cost, (32, 36, 52), chunk_rows=rows), ref)


def test_upsample_regress_gradient_equals_trilinears():
    # Training backpropagates through the separable matrix form; its gradient must be the trilinear one.
    torch.manual_seed(7)
    cost = torch.randn(2, 1, 8, 9, 13, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 36, 52, dtype=torch.float64)
    ref = soft_argmin(F.interpolate(cost, (32, 36, 52), mode="trilinear", align_corners=False).squeeze(1))
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), cost)
    out = upsample_regress(cost, (32, 36, 52))
    (g_out,) = torch.autograd.grad((out * weights).sum(), cost)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(g_out, g_ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_cost_volume_gradients(layout):
    # The volumes' hand-written backward, checked against finite differences (max_disp beyond the width too).
    torch.manual_seed(8)
    left = torch.randn(2, 4, 3, 7, dtype=torch.float64, requires_grad=True)
    right = torch.randn(2, 4, 3, 7, dtype=torch.float64, requires_grad=True)
    for disp in (3, 9):
        assert torch.autograd.gradcheck(lambda a, b, disp=disp: concat_volume(a, b, disp, layout), (left, right))
        assert torch.autograd.gradcheck(lambda a, b, disp=disp: gwc_volume(a, b, disp, 2, layout), (left, right))
    with torch.no_grad():  # and the same forward as without autograd
        plain = concat_volume(left, right, 3, layout)
    torch.testing.assert_close(concat_volume(left, right, 3, layout), plain, rtol=0, atol=0)


def test_half_precision_costs_are_regressed_in_fp32():
    torch.manual_seed(9)
    cost = (torch.randn(1, 1, 8, 9, 13) * 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = upsample_regress(cost, (32, 36, 52), chunk_rows=16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, upsample_regress(cost.float(), (32, 36, 52)), rtol=0, atol=1e-4)


def test_soft_argmin_of_a_peak_is_its_index():
    cost = torch.full((1, 10, 1, 3), -1e4)
    cost[0, 7, 0, :] = 0
    torch.testing.assert_close(soft_argmin(cost), torch.full((1, 1, 3), 7.0))


def test_cost_volumes_shift_right_features():
    left = torch.randn(1, 4, 3, 6)
    right = torch.randn(1, 4, 3, 6)
    vol = concat_volume(left, right, 3)
    assert vol.shape == (1, 8, 3, 3, 6)
    torch.testing.assert_close(vol[0, 4:, 2, :, 5], right[0, :, :, 3])
    torch.testing.assert_close(vol[0, :4, 2, :, 5], left[0, :, :, 5])
    assert (vol[:, :, 2, :, :2] == 0).all()
    g = gwc_volume(left, right, 3, groups=2)
    torch.testing.assert_close(g[0, 1, 1, :, 4], (left[0, 2:, :, 4] * right[0, 2:, :, 3]).mean(0))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        gwc_volume(left, right, 3, groups=3)


def test_gwc_volume_model_runs():
    model = build_model(tiny(volume="gwc", gwc_groups=8)).eval()
    with torch.no_grad():
        assert model.infer(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)).disparity.shape == (1, 64, 64)


def test_config_errors():
    with pytest.raises(ValueError, match="multiple of 16"):
        build_model(tiny(max_disp=100))
    cfg = tiny()
    cfg.feature.attention[0].position = "layer9"
    with pytest.raises(ValueError, match="attention position"):
        build_model(cfg)
    with pytest.raises(ValueError, match="unknown model config keys"):
        build_model({**load_config("model/psmnet"), "maxdisp": 192})
    # a removed refinement kind names the commit that still loads it
    with pytest.raises(ValueError, match=r"model.refine=warp was removed.*git checkout [0-9a-f]{7}"):
        build_model({**load_config("model/psmnet"), "refine": "warp"})
    model = build_model(tiny())
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 3, 60, 64), torch.rand(1, 3, 60, 64))
    with pytest.raises(ValueError, match="multiples of 16"):
        model.eval().infer(torch.rand(1, 3, 60, 64), torch.rand(1, 3, 60, 64))
    with pytest.raises(FileNotFoundError, match="available"):
        load_config("model/nope")


def test_half_resolution_attention_placement():
    cfg = tiny()
    cfg.feature.attention[0].position = "layer1"
    cfg.feature.attention[0].key_channels = 8
    cfg.feature.attention[0].value_channels = 16
    model = build_model(cfg).eval()
    assert model.feature_extraction.attention_layer1.in_channels == 16
    with torch.no_grad():
        assert model.infer(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)).disparity.shape == (1, 64, 64)


def _randomise_batchnorm(model):
    """Eval-mode BatchNorm with non-trivial statistics, so that a wrong band border shows."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    with torch.no_grad():  # sharper costs: random weights alone give a near-uniform soft-argmin
        for name, m in model.named_modules():
            if name.startswith("aggregation.classif") and isinstance(m, torch.nn.Conv3d) and m.out_channels == 1:
                m.weight.mul_(300)
    return model


def test_final_cost_is_the_last_head_bit_for_bit_and_frees_the_volume_early():
    torch.manual_seed(0)
    model = _randomise_batchnorm(build_model(tiny(hourglasses=3))).eval()
    agg = model.aggregation
    left, right = torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        ref = agg(model.cost_volume(left, right))[-1]
        holder = [model.cost_volume(left, right)]
        alive = weakref.ref(holder[0])
        freed = []
        hook = agg.dres1.register_forward_pre_hook(lambda module, args: freed.append(alive() is None))
        out = agg.final_cost(holder)
    hook.remove()
    assert holder == [] and freed == [True]  # the volume was gone before the second 3-D stage ran
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("hourglasses,volume", [(2, "concat"), (3, "gwc")])
def test_eval_in_bands_equals_the_whole_frame(hourglasses, volume, monkeypatch):
    """A memory budget that forces bands of rows gives the whole-frame disparity (halo >= receptive field)."""
    torch.manual_seed(0)
    model = _randomise_batchnorm(build_model(tiny(hourglasses=hourglasses, volume=volume, gwc_groups=4))).eval()
    left, right = torch.rand(1, 3, 480, 64), torch.rand(1, 3, 480, 64)
    model.set_runtime(memory_budget_gb=None)
    out = run(model, left, right)
    whole = out.disparity
    assert out.bands == 1 and out.heads == [hourglasses] and whole.std() > 2  # disparities that vary
    per_row = 16 * (model.max_disp // 4) * model.bytes_per_cell()  # one 1/4-resolution row, 16 columns
    full_res = model.bytes_2d_per_pixel() * 480 * 64  # what the budget keeps for the full-resolution part
    model.set_runtime(memory_budget_gb=(full_res + (2 * model.band_halo + 8) * per_row) / 2**30)
    assert model.eval_tile_rows(1, 120, 16) == 8
    out = run(model, left, right)
    banded = out.disparity
    assert out.bands == 15  # 120 rows at 1/4 in bands of 8
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-3)
    # The check has teeth: a halo smaller than the receptive field changes the result.
    monkeypatch.setattr(type(model), "band_halo", property(lambda self: 4))
    model.set_runtime(memory_budget_gb=(full_res + (2 * 4 + 8) * per_row) / 2**30)
    assert (_disparity(model, left, right) - whole).abs().max() > 1e-2


def test_memory_budget_below_the_smallest_band_warns_or_runs_whole(caplog):
    model = build_model(tiny(hourglasses=2))
    halo, per_row = model.band_halo, 16 * (model.max_disp // 4) * model.bytes_per_cell()  # 16 columns at 1/4
    full_res = model.bytes_2d_per_pixel() * 800 * 64  # the budget first keeps the full-resolution part
    model.set_runtime(memory_budget_gb=(full_res + (2 * halo + 40) * per_row) / 2**30)
    assert model.eval_tile_rows(1, 200, 16) == 40  # 5 bands of 40 rows
    model.set_runtime(memory_budget_gb=(full_res + (2 * halo + 44) * per_row) / 2**30)
    assert model.eval_tile_rows(1, 200, 16) == 40  # 44 would need 5 bands too: evened out to 40
    model.set_runtime(memory_budget_gb=(full_res + halo * per_row) / 2**30)  # below 4 rows + two halos
    with caplog.at_level("WARNING"):
        assert model.eval_tile_rows(1, 200, 16) == 4
        assert model.eval_tile_rows(1, 200, 16) == 4
    warned = [r.getMessage() for r in caplog.records if "below the smallest band" in r.getMessage()]
    assert len(warned) == 1 and "x the 3-D work" in warned[0]  # once, with what it costs
    # A frame no taller than one band of 4 rows with its halos runs whole: bands would not save memory.
    assert model.eval_tile_rows(1, 4 + 2 * halo, 16) is None


def test_memory_budget_leaves_normal_frames_whole_and_is_checked():
    model = build_model(load_config("model/ea_psmnet"))
    assert model.eval_tile_rows(1, 544 // 4, 960 // 4) is None  # default 8 GB: Scene Flow frames stay whole
    rows = model.eval_tile_rows(1, 1984 // 4, 2880 // 4)  # full-size Middlebury does not
    assert rows is not None and rows % 4 == 0 and rows + 2 * model.band_halo < 1984 // 4
    with pytest.raises(Exception, match="memory_budget_gb=0: must be > 0"):
        model.set_runtime(memory_budget_gb=0)


def test_folded_batchnorm_gives_the_same_disparities():
    from stereo.models.fuse import fold_batchnorm

    torch.manual_seed(0)
    model = _randomise_batchnorm(build_model(tiny(hourglasses=3))).eval()
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    ref = _disparity(model, left, right)
    folded = fold_batchnorm(model)
    bns = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d))]
    assert folded.folded_batchnorms == len(bns) > 40  # every one of them, the original untouched
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) for m in folded.modules())
    assert ref.std() > 2
    torch.testing.assert_close(_disparity(folded, left, right), ref, rtol=0, atol=1e-3)
    torch.testing.assert_close(_disparity(model, left, right), ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model.train())


def test_resizing_matrices_built_under_inference_mode_still_serve_training():
    # The matrices are cached per size: one first built by run() (inference mode) is reused by training.
    from stereo.models.regression import _resize_matrix64

    _resize_matrix64.cache_clear()
    with torch.inference_mode():
        upsample_regress(torch.randn(1, 1, 5, 6, 7, dtype=torch.float64), (20, 24, 28))
    cost = torch.randn(1, 1, 5, 6, 7, dtype=torch.float64, requires_grad=True)  # the cached dtype: no copy
    upsample_regress(cost, (20, 24, 28)).sum().backward()
    assert cost.grad is not None and torch.isfinite(cost.grad).all()


def test_local_regression_stays_on_the_stronger_mode():
    """Two modes (60% of the mass around 10 px with the likeliest disparity, 40% around 40 px): the
    soft-argmin lands between them, the local one (radius 8 px) on the mode of the likeliest disparity;
    a window wider than the range is the soft-argmin."""
    prob = torch.zeros(1, 64, 1, 1, dtype=torch.float64)
    prob[0, 9:12, 0, 0] = torch.tensor([0.1, 0.4, 0.1], dtype=torch.float64)  # mean 10
    prob[0, 39:42, 0, 0] = torch.tensor([0.1, 0.2, 0.1], dtype=torch.float64)  # mean 40
    cost = prob.clamp_min(1e-30).log()  # softmax(log p) = p
    full = soft_argmin(cost)
    local = soft_argmin(cost, radius=8)
    assert full.item() == pytest.approx(0.6 * 10 + 0.4 * 40)
    assert local.item() == pytest.approx(10.0)
    torch.testing.assert_close(soft_argmin(cost, radius=64), full, rtol=0, atol=1e-12)
    d, c = soft_argmin(cost, confidence=True, radius=8)
    assert c.item() == pytest.approx(0.6)  # the mass within 1.5 px of the estimate (9, 10, 11)


def test_local_regression_through_upsampling_and_the_model():
    torch.manual_seed(8)
    cost = torch.randn(1, 1, 8, 9, 13, dtype=torch.float64) * 3
    up = F.interpolate(cost, (32, 36, 52), mode="trilinear", align_corners=False).squeeze(1)
    torch.testing.assert_close(upsample_regress(cost, (32, 36, 52), chunk_rows=7, radius=4), soft_argmin(up, radius=4))
    model = _randomise_batchnorm(build_model(tiny())).eval()
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    plain = run(model, left, right).disparity
    model.set_runtime(regression="local", regression_radius=1000.0)  # a window over the whole range
    torch.testing.assert_close(run(model, left, right).disparity, plain, rtol=0, atol=1e-4)
    model.set_runtime(regression_radius=2.0)
    assert (run(model, left, right).disparity - plain).abs().max() > 1e-2
