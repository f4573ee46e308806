"""model.subpixel_select=learned: the candidates, the identity start, the mixture (the same in training and eval),
what a short training learns, and fine-tuning from weights without it."""

import pytest
import torch

from stereo.config import load_config, to_plain
from stereo.errors import CheckpointError, ConfigError
from stereo.models import build_model
from stereo.models.propagation import NEIGHBOURS, shifted
from stereo.models.selection import CANDIDATES, GAIN_RATE, NeighbourSelect, candidates
from stereo.models.subpixel import local_contrast
from tests.test_propagation import COLOURS, _views


def _model(*extra: str):
    cfg = load_config("train", ["model=ea_psmnet_light", "model.max_disp=32", "model.refine=modes",
                                "model.subpixel=match", *extra])  # fmt: skip
    torch.manual_seed(0)
    return build_model(cfg.model), cfg


def test_candidates_are_the_own_value_then_each_neighbours():
    disp = torch.rand(2, 9, 13)
    values = candidates(disp)
    assert values.shape == (2, CANDIDATES, 9, 13) and CANDIDATES == 1 + len(NEIGHBOURS)
    assert torch.equal(values[:, 0], disp)
    for k, (dy, dx) in enumerate(NEIGHBOURS, 1):
        assert torch.equal(values[:, k], shifted(disp, dy, dx))


def test_an_untrained_choice_returns_its_input_and_the_stage_with_it_equals_the_stage_without():
    fl, fr = _views(4, seed=5)
    disp = 2 + 6 * torch.rand(1, 24, 48, generator=torch.Generator().manual_seed(6))
    select = NeighbourSelect(COLOURS)
    for mode in (select.eval(), select.train()):
        assert torch.equal(mode(fl, fr, disp, torch.zeros(1, 1, 24, 48)), disp)
    with_it, _ = _model("model.subpixel_select=learned")
    without, _ = _model()
    without.load_state_dict({k: v for k, v in with_it.state_dict().items() if ".selector." not in k})
    torch.nn.init.normal_(with_it.subpixel.out.weight, std=0.05)
    without.subpixel.out.weight.data.copy_(with_it.subpixel.out.weight)
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(with_it.eval().infer(left, right).disparity, without.eval().infer(left, right).disparity)
    added = {k.split(".")[1] for k in with_it.state_dict()} - {k.split(".")[1] for k in without.state_dict()}
    assert added == {"selector"}


def test_the_mixture_weighs_the_candidates_by_the_scores_softmax_in_training_and_eval():
    fl, fr = _views(4, seed=7)
    disp = 2 + 6 * torch.rand(1, 24, 48, generator=torch.Generator().manual_seed(8))
    contrast = torch.zeros(1, 1, 24, 48)
    torch.manual_seed(1)
    select = NeighbourSelect(COLOURS)
    torch.nn.init.normal_(select.out.weight, std=0.5)
    with torch.no_grad():
        select.gain.fill_(0.75 / GAIN_RATE)
    values, scores = select.scores(fl, fr, disp, contrast)
    by_hand = disp + 0.75 * ((scores.softmax(1) * values).sum(1) - disp)
    mixed = select.train()(fl, fr, disp, contrast)
    assert torch.allclose(mixed, by_hand, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(select.eval()(fl, fr, disp, contrast), mixed.detach())
    assert (mixed >= values.amin(1) - 1e-5).all() and (mixed <= values.amax(1) + 1e-5).all()
    assert (mixed - disp).abs().max() > 0.1
    mixed.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in select.parameters())


def test_in_training_the_scores_learn_as_if_the_gain_were_one_and_the_value_is_unchanged():
    """The value is disp + gain * (mixture - disp); the gradient that reaches the candidates' weights (softmax of the
    scores, and through them the scores' parameters and inputs) is that of gain 1, every other gradient exact."""
    fl, fr = _views(4, seed=11)
    disp0 = 2 + 6 * torch.rand(1, 24, 48, generator=torch.Generator().manual_seed(12))
    target = disp0 + torch.randn(1, 24, 48, generator=torch.Generator().manual_seed(13))
    contrast = torch.zeros(1, 1, 24, 48)
    torch.manual_seed(3)
    select = NeighbourSelect(COLOURS).train()
    torch.nn.init.normal_(select.out.weight, std=0.5)
    wrt = [*select.parameters()]
    for g in (0.0, 0.3, -0.2):
        with torch.no_grad():
            select.gain.fill_(g / GAIN_RATE)
        disp = disp0.clone().requires_grad_(True)
        out = select(fl, fr, disp, contrast)
        got = torch.autograd.grad((out - target).abs().sum(), [*wrt, disp])
        values, scores = select.scores(fl, fr, disp, contrast)
        w = scores.softmax(1)
        gain = GAIN_RATE * select.gain
        assert torch.allclose(out, disp + gain * ((w * values).sum(1) - disp), atol=1e-6)
        upstream = torch.sign(out - target).detach()
        by_hand = disp + gain * ((w.detach() * values).sum(1) - disp) + (w * values.detach()).sum(1)
        expected = torch.autograd.grad((upstream * by_hand).sum(), [*wrt, disp])
        for a, b in zip(got, expected, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
        assert all(a.abs().sum() > 0 for a in got)  # at gain 0 too


def test_a_gain_above_one_never_carries_a_disparity_below_zero():
    """With a gain above 1 the move past the mixture can go below zero (pixels at 8 px beside a background at
    0.1 px); the choice returns that move clamped at 0, elsewhere unchanged."""
    fl, fr = _views(4, seed=21)
    g = torch.Generator().manual_seed(22)
    disp = torch.where(torch.rand(1, 24, 48, generator=g) < 0.5, 8.0, 0.1)
    contrast = torch.zeros(1, 1, 24, 48)
    torch.manual_seed(4)
    select = NeighbourSelect(COLOURS).eval()
    with torch.no_grad():
        select.out.bias.zero_()  # every candidate weighs the same: the mixture is the neighbourhood's mean
        select.gain.fill_(2.5 / GAIN_RATE)
        values, scores = select.scores(fl, fr, disp, contrast)
        unclamped = disp + 2.5 * ((scores.softmax(1) * values).sum(1) - disp)
        out = select(fl, fr, disp, contrast)
    assert (unclamped < -1).any()
    assert torch.allclose(out, unclamped.clamp_min(0), atol=1e-5)


def test_a_short_training_learns_to_mend_a_wrong_patch_and_leave_the_rest():
    """One surface at 5 px, answers wrong by 3 px in random patches: after training on such answers (the mixture's
    L1, as the engine trains it) the mixture mends a new patch and keeps correct pixels."""
    fl, fr = _views(5, h=32, w=64, seed=9)
    contrast, truth = torch.zeros(1, 1, 32, 64), torch.full((1, 32, 64), 5.0)
    g = torch.Generator().manual_seed(10)

    def answer() -> torch.Tensor:
        disp = truth + 0.1 * torch.randn(1, 32, 64, generator=g)
        y, x = int(torch.randint(4, 26, (1,), generator=g)), int(torch.randint(4, 56, (1,), generator=g))
        disp[:, y : y + 3, x : x + 4] += 3.0
        return disp

    torch.manual_seed(2)
    select = NeighbourSelect(COLOURS)
    opt = torch.optim.Adam(select.parameters(), lr=3e-3)
    for _ in range(150):
        loss = (select.train()(fl, fr, answer(), contrast) - truth).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    disp = truth + 0.1 * torch.randn(1, 32, 64, generator=g)
    disp[:, 14:17, 30:34] += 3.0
    with torch.no_grad():
        out = select.eval()(fl, fr, disp, contrast)
    assert (out[:, 14:17, 30:34] - truth[:, 14:17, 30:34]).abs().max() < 0.5  # mended: near the surface's 5 px
    mask = torch.ones_like(disp, dtype=torch.bool)
    mask[:, 12:19, 26:38] = False
    assert ((out - truth).abs() > 0.5)[mask].sum() == 0  # no correct pixel took a wrong value


def test_fine_tuning_adds_the_choice_at_its_identity_start_and_refuses_to_drop_it(tmp_path):
    from stereo.checkpoint import init_weights

    before, cfg = _model()
    torch.nn.init.normal_(before.subpixel.out.weight, std=0.05)
    path = tmp_path / "before.pt"
    torch.save({"model": before.state_dict(), "model_config": to_plain(cfg.model), "step": 0}, path)
    after, after_cfg = _model("model.subpixel_select=learned")
    kept = init_weights(after, path, after_cfg.model)
    assert kept and all(k.startswith("subpixel.selector.") for k in kept)
    assert torch.equal(after.subpixel.out.weight, before.subpixel.out.weight)
    assert after.subpixel.selector.gain == 0 and not after.subpixel.selector.out.weight.any()
    path2 = tmp_path / "after.pt"
    torch.save({"model": after.state_dict(), "model_config": to_plain(after_cfg.model), "step": 0}, path2)
    plain, plain_cfg = _model()
    with pytest.raises(CheckpointError, match="subpixel_select=learned"):
        init_weights(plain, path2, plain_cfg.model)


def test_the_choice_needs_the_stage():
    with pytest.raises(ConfigError, match="subpixel_select=learned .* needs model.subpixel=match"):
        build_model(load_config("train", ["model=ea_psmnet_light", "model.subpixel_select=learned"]).model)


def test_rounds_run_an_update_and_a_choice_each_after_the_first_choice_in_eval_and_as_trained_in_training():
    model, _ = _model("model.subpixel_select=learned", "model.subpixel_steps=2", "model.subpixel_rounds=1")
    stage = model.subpixel
    torch.nn.init.normal_(stage.out.weight, std=0.05)
    torch.nn.init.normal_(stage.selector.out.weight, std=0.5)
    with torch.no_grad():
        stage.selector.gain.fill_(0.8 / GAIN_RATE)
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    model.eval()
    with torch.no_grad():
        model.set_runtime(refinement=False)
        base = model.infer(left, right).disparity  # the answer before the stage
        guides = model.guides(left, right)
        fl, fr, contrast = stage.embed(guides[0]), stage.embed(guides[1]), local_contrast(guides[0])
        disp = stage.update(fl, fr, stage.update(fl, fr, base, contrast), contrast)
        by_hand = [stage.selector(fl, fr, disp, contrast)]  # after 0, 1, 2 rounds
        for _ in range(2):
            by_hand.append(stage.selector(fl, fr, stage.update(fl, fr, by_hand[-1], contrast), contrast))
        assert (by_hand[1] - by_hand[0]).abs().max() > 0.05  # a round changes the answer
        model.set_runtime(refinement=True)
        assert torch.allclose(model.infer(left, right).disparity, by_hand[1], atol=1e-5)  # null: as trained
        for k in (0, 2):
            model.set_runtime(subpixel_rounds=k)
            assert torch.allclose(model.infer(left, right).disparity, by_hand[k], atol=1e-5)
        model.train()
        assert torch.allclose(model.matched(base, model.guides(left, right)), by_hand[1], atol=1e-5)
    with pytest.raises(ConfigError, match="subpixel_rounds=1: each round ends with the learned choice"):
        _model()[0].set_runtime(subpixel_rounds=1)
    with pytest.raises(ConfigError, match="subpixel_rounds=1: each round ends with the learned choice"):
        _model("model.subpixel_rounds=1")


def test_fine_tuning_may_change_the_rounds_and_stereo_eval_records_them(sample_root, tmp_path):
    import json

    from stereo.checkpoint import init_weights
    from stereo.evaluate import evaluate
    from tests.conftest import make_tiny_cfg

    cfg = make_tiny_cfg(sample_root, "model.refine=modes", "model.subpixel=match", "model.subpixel_select=learned")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    torch.nn.init.normal_(model.subpixel.out.weight, std=0.05)
    path = tmp_path / "s.pt"
    torch.save({"model": model.state_dict(), "model_config": to_plain(cfg.model), "step": 0}, path)
    more = build_model(make_tiny_cfg(sample_root, "model.refine=modes", "model.subpixel=match",
                                     "model.subpixel_select=learned", "model.subpixel_rounds=2").model)  # fmt: skip
    init_weights(more, path, more.config)  # the rounds hold no weights
    assert more.subpixel.rounds == 2
    assert all(torch.equal(a, b) for a, b in zip(more.state_dict().values(), model.state_dict().values(), strict=True))
    reports = {}
    for label, extra in (("plain", []), ("rounds", ["subpixel_rounds=1"])):
        eval_cfg = load_config("eval", [f"checkpoint={path}", f"data.root={sample_root}", "device=cpu", "data.limit=2",
                                        *extra])  # fmt: skip
        evaluate(eval_cfg, tmp_path / label, show_progress=False, tensorboard=False)
        reports[label] = json.loads((tmp_path / label / "metrics.json").read_text())
    assert (reports["plain"]["subpixel_rounds"], reports["rounds"]["subpixel_rounds"]) == (0, 1)
