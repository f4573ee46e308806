"""model.subpixel=match: identity when untrained, its correlation curve right, gradients right, and the
network and init_from around it."""

import pytest
import torch

from stereo.config import load_config, to_plain
from stereo.errors import CheckpointError, ConfigError
from stereo.models import build_model
from stereo.models.subpixel import CONTRAST_FLOOR, CONTRAST_WINDOW, OFFSETS, REACH, SubpixelMatch, local_contrast


def _views(seed, dtype=torch.float32, h=10, w=24):
    g = torch.Generator().manual_seed(seed)
    right = torch.rand(1, 3, h, w, generator=g, dtype=dtype)
    disp = 3 + 4 * torch.rand(1, h, w, generator=g, dtype=dtype)
    return disp, torch.rand(1, 3, h, w, generator=g, dtype=dtype), right


def test_untrained_stage_returns_its_input_exactly_and_can_learn():
    stage = SubpixelMatch(channels=4, feature_channels=3, steps=2)
    disp, left, right = _views(0)
    out = stage(disp, left, right)
    assert torch.equal(out, disp)
    (out - disp - 0.5).abs().sum().backward()
    assert stage.out.weight.grad.abs().sum() > 0


def test_the_curve_is_the_cosine_and_colour_difference_at_each_offset():
    torch.manual_seed(1)
    stage = SubpixelMatch(channels=4, feature_channels=3)
    right = torch.rand(1, 3, 8, 32)
    left = torch.roll(right, 3, dims=-1)  # left(x) = right(x - 3): disparity 3 everywhere
    disp = torch.full((1, 8, 32), 3.0)
    fl, fr = stage.embed(left), stage.embed(right)
    assert fl.shape == (1, 3 + 3, 8, 32) and torch.equal(fl[:, 3:], left)
    assert torch.allclose(fl[:, :3].norm(dim=1), torch.ones(1, 8, 32), atol=1e-5)  # unit feature vectors
    curve, inside = stage.curve(fl, fr, disp)
    k, zero = len(OFFSETS), OFFSETS.index(0.0)
    assert curve.shape == (1, 2 * k, 8, 32)
    # Away from the borders (the features see 4 px around) the match at offset 0 is exact: cosine 1, no
    # colour difference; other offsets differ (random texture).
    cos, colour = curve[0, :k, 1:-1, 8:-4], curve[0, k:, 1:-1, 8:-4]
    assert torch.allclose(cos[zero], torch.ones_like(cos[zero]), atol=1e-5)
    assert colour[zero].abs().max() < 1e-6
    assert all((colour[i] > 1e-3).float().mean() > 0.9 for i in range(k) if i != zero)
    assert (cos[:zero] < cos[zero] - 1e-4).float().mean() > 0.9
    # The share of offsets whose match is inside the right view: 0 at the left border, 1 well inside.
    assert inside[0, 0, :, 0].max() == 0 and torch.equal(inside[0, 0, :, 6:], torch.ones(8, 26))


def test_local_contrast_is_the_log_variance_over_the_window_clipped_at_the_borders():
    g = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 9, 11, generator=g, dtype=torch.float64)
    got = local_contrast(image)
    assert got.shape == (1, 1, 9, 11)
    r = CONTRAST_WINDOW // 2
    for y, x in [(4, 5), (0, 0), (8, 10), (1, 9)]:  # inside, corners, near a border
        win = image[0, :, max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].reshape(3, -1)
        var = win.var(dim=1, unbiased=False).mean()
        assert torch.isclose(got[0, 0, y, x], torch.log(var + CONTRAST_FLOOR), atol=1e-9)
    flat = torch.full((1, 3, 6, 6), 0.3, dtype=torch.float64)
    assert torch.allclose(local_contrast(flat), torch.full((1, 1, 6, 6), CONTRAST_FLOOR).log().double())


def test_the_head_reads_the_local_contrast():
    """Two scenes with the same features and curve but a different contrast get different steps: the head can
    tell a flat, noisy surface from a textured one."""
    torch.manual_seed(6)
    stage = SubpixelMatch(channels=4, feature_channels=3)
    torch.nn.init.normal_(stage.out.weight, std=0.5)
    disp, left, right = _views(6)
    fl, fr = stage.embed(left), stage.embed(right)
    low, high = torch.full((1, 1, 10, 24), -9.0), torch.full((1, 1, 10, 24), -1.0)
    with torch.no_grad():
        assert not torch.allclose(stage.update(fl, fr, disp, low), stage.update(fl, fr, disp, high))
        assert torch.equal(stage.update(fl, fr, disp, local_contrast(left)), stage(disp, left, right))


def test_residual_is_bounded_by_the_reach_and_gated():
    stage = SubpixelMatch(channels=4, feature_channels=3)
    disp, left, right = _views(2)
    with torch.no_grad():
        stage.out.bias[0] = 50.0  # tanh saturates: the residual is the reach times the gate
        stage.out.bias[1] = 50.0
        assert torch.allclose(stage(disp, left, right), disp + REACH, atol=1e-5)
        stage.out.bias[1] = 0.0  # gate 1/2
        assert torch.allclose(stage(disp, left, right), disp + REACH / 2, atol=1e-5)
        stage.out.bias[0] = -50.0
        assert (stage(torch.zeros_like(disp), left, right) == 0).all()  # never negative


def test_stage_gradients_match_finite_differences():
    stage = SubpixelMatch(channels=3, feature_channels=2, steps=2).double()
    torch.nn.init.normal_(stage.out.weight, std=0.05)
    inputs = [t.requires_grad_() for t in _views(3, torch.float64, h=5, w=12)]
    assert torch.autograd.gradcheck(stage, tuple(inputs), eps=1e-6, atol=1e-5)


def test_stage_runs_in_fp32_under_bf16_autocast():
    stage = SubpixelMatch(channels=4, feature_channels=3)
    torch.nn.init.normal_(stage.out.weight, std=0.05)
    disp, left, right = _views(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stage(disp, left.bfloat16(), right.bfloat16())
    assert out.dtype == torch.float32
    assert torch.allclose(out, stage(disp, left.bfloat16().float(), right.bfloat16().float()), atol=1e-5)


def _model(subpixel, seed=0):
    cfg = load_config(
        "train", ["model=ea_psmnet_light", "model.max_disp=32", "model.refine=modes", f"model.subpixel={subpixel}"]
    )
    torch.manual_seed(seed)
    return build_model(cfg.model)


def test_network_with_the_stage_starts_equal_and_applies_it_to_every_head():
    plain, matched = _model("none"), _model("match")
    assert plain.subpixel is None and not any(k.startswith("subpixel") for k in plain.state_dict())
    missing = matched.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("subpixel.") for k in missing)
    left, right = torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        plain.eval(), matched.eval()
        assert torch.equal(plain.infer(left, right).disparity, matched.infer(left, right).disparity)
        torch.nn.init.normal_(matched.subpixel.out.weight, std=0.05)
        moved = matched.infer(left, right).disparity
        base = plain.infer(left, right).disparity
        assert not torch.allclose(moved, base) and (moved - base).abs().max() <= REACH + 1e-4
        matched.set_runtime(refinement=False)  # the network's own answer: neither refinement nor stage
        plain.set_runtime(refinement=False)
        assert torch.equal(matched.infer(left, right).disparity, plain.infer(left, right).disparity)
        matched.set_runtime(refinement=True)
        guides = matched.guides(left, right)
        matched.train(), plain.train()
        heads_m, heads_p = matched(left, right).heads, plain(left, right).heads
    for a, b in zip(heads_m, heads_p, strict=True):
        assert torch.allclose(a, matched.subpixel(b, *guides), atol=1e-5)


def test_runtime_subpixel_steps_runs_that_many_updates_in_eval_only():
    matched = _model("match").eval()
    matched.subpixel.steps = 2  # as trained (model.subpixel_steps=2)
    torch.nn.init.normal_(matched.subpixel.out.weight, std=0.05)
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    stage = matched.subpixel
    with torch.no_grad():
        matched.set_runtime(refinement=False)
        base = matched.infer(left, right).disparity  # the answer before the stage (refinement=false skips both)
        guides = matched.guides(left, right)
        fl, fr, contrast = stage.embed(guides[0]), stage.embed(guides[1]), local_contrast(guides[0])
        by_hand = [base]
        for _ in range(3):
            by_hand.append(stage.update(fl, fr, by_hand[-1], contrast))
        matched.set_runtime(refinement=True)
        assert torch.allclose(matched.infer(left, right).disparity, by_hand[2], atol=1e-5)  # null: as trained
        for k in (1, 3):
            matched.set_runtime(subpixel_steps=k)
            assert torch.allclose(matched.infer(left, right).disparity, by_hand[k], atol=1e-5)
        matched.train()
        guides_train = matched.guides(left, right)
        # training always runs the trained number, whatever the runtime says
        assert torch.allclose(matched.matched(base, guides_train), by_hand[2], atol=1e-5)
    with pytest.raises(ConfigError, match="subpixel_steps=1: it needs a sub-pixel stage, and this model has none"):
        _model("none").set_runtime(subpixel_steps=1)
    with pytest.raises(ConfigError, match="subpixel_steps"):
        matched.set_runtime(subpixel_steps=0)


def test_init_from_may_add_the_stage_but_not_drop_it(checkpoint, sample_root, tmp_path):
    from stereo.checkpoint import load_checkpoint
    from stereo.train import Trainer
    from tests.conftest import make_tiny_cfg

    saved = load_checkpoint(checkpoint)["model"]
    trainer = Trainer(make_tiny_cfg(sample_root, "model.subpixel=match", init_from=str(checkpoint)), tmp_path / "a")
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k].cpu(), v) for k, v in saved.items())
    assert torch.count_nonzero(state["subpixel.out.weight"]) == 0  # the identity it starts as
    torch.save({"model": state, "model_config": to_plain(trainer.model.config), "step": 0}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"subpixel: 'match' -> 'none'.*add model.subpixel=match"):
        Trainer(make_tiny_cfg(sample_root, init_from=str(tmp_path / "s.pt")), tmp_path / "b")
    # Its number of steps holds no weights: fine-tuning may change it.
    steps = ("model.subpixel=match", "model.subpixel_steps=2")
    more = make_tiny_cfg(sample_root, *steps, init_from=str(tmp_path / "s.pt"))
    assert Trainer(more, tmp_path / "c").model.subpixel.steps == 2


def test_truncated_loss_leaves_out_the_pixels_missed_by_max_error_or_more():
    import torch.nn.functional as F

    from stereo.config import TrainAppConfig, combination_errors
    from stereo.train import sequence_loss

    gt = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    out = torch.tensor([[[1.5, 2.0, 9.0, 4.2]]], requires_grad=True)  # the third pixel misses by 6 px
    valid = torch.tensor([[[True, True, True, False]]])
    near = torch.tensor([[[True, True, False, False]]])
    full = sequence_loss([out], gt, valid, [1.0])
    assert torch.allclose(full, F.smooth_l1_loss(out[valid], gt[valid]))
    cut = sequence_loss([out], gt, valid, [1.0], max_error=3.0)
    assert torch.allclose(cut, F.smooth_l1_loss(out[near], gt[near]))
    cut.backward()
    assert out.grad[0, 0, 2] == 0 and out.grad[0, 0, 0] > 0
    none_left = sequence_loss([out], gt, valid, [1.0], max_error=0.1)  # only the exact pixel is left
    assert torch.allclose(none_left, torch.zeros(()))
    assert sequence_loss([out], gt, valid & ~near, [1.0], max_error=3.0) == 0  # nothing left: zero, not NaN
    refused = load_config("train", ["train.loss=photometric", "train.loss_max_error=3"])
    assert combination_errors(refused, TrainAppConfig) == [
        "train.loss_max_error truncates a loss on the ground truth (smooth_l1 or l1), not train.loss=photometric; "
        "set it to null"
    ]
    assert combination_errors(load_config("train", ["train.loss_max_error=3"]), TrainAppConfig) == []
    l1 = load_config("train", ["train.loss=l1", "train.loss_max_error=3"])
    assert combination_errors(l1, TrainAppConfig) == []


def test_l1_loss_pulls_every_error_alike():
    """train.loss=l1: the mean absolute error, so a 0.2 px error pulls as hard as a 2 px one (smooth L1's
    pull fades with the error below 1 px)."""
    from stereo.train import sequence_loss

    gt = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    out = torch.tensor([[[1.2, 2.0, 5.0, 9.0]]], requires_grad=True)
    valid = torch.tensor([[[True, True, True, False]]])
    loss = sequence_loss([out], gt, valid, [0.5], kind="l1")
    assert loss.item() == pytest.approx(0.5 * (0.2 + 0.0 + 2.0) / 3)
    loss.backward()
    assert out.grad[0, 0, 0].item() == pytest.approx(0.5 / 3) and out.grad[0, 0, 2].item() == pytest.approx(0.5 / 3)
    assert out.grad[0, 0, 3] == 0
    cut = sequence_loss([out], gt, valid, [1.0], max_error=1.0, kind="l1")  # 2 px or more: left out
    assert cut.item() == pytest.approx((0.2 + 0.0) / 2)
    with pytest.raises(ConfigError, match="not a loss on the ground truth"):
        sequence_loss([out], gt, valid, [1.0], kind="photometric")
