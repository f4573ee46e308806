"""propagate=N: the neighbours' values, the matching cost, and what a round does to a wrong patch and an edge."""

import pytest
import torch
import torch.nn.functional as F

from stereo.config import load_config
from stereo.errors import ConfigError
from stereo.models import build_model
from stereo.models.propagation import MIN_JUMP, NEIGHBOURS, OUTSIDE, WINDOW, match_cost, propagate, shifted

COLOURS = 3


def test_shifted_takes_the_neighbours_value_and_the_nearest_border_beyond():
    disp = torch.arange(5 * 7, dtype=torch.float32).view(1, 5, 7)
    for dy, dx in ((0, 2), (0, -3), (1, 0), (-4, 0), (2, -1)):
        out = shifted(disp, dy, dx)
        for y in range(5):
            for x in range(7):
                assert out[0, y, x] == disp[0, min(max(y + dy, 0), 4), min(max(x + dx, 0), 6)]


def _embedding(texture: torch.Tensor) -> torch.Tensor:
    """(B, C + 3, H, W): unit-length features, then colours (as SubpixelMatch.embed lays them out)."""
    return torch.cat([F.normalize(texture[:, :-COLOURS], dim=1), texture[:, -COLOURS:]], 1)


def _views(d: int, h: int = 24, w: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Embedded views of one fronto-parallel surface at integer disparity ``d``: right(x - d) = left(x)."""
    g = torch.Generator().manual_seed(seed)
    texture = _embedding(torch.rand(1, 8 + COLOURS, h, w + d, generator=g) - 0.3)
    return texture[..., :w], texture[..., d : d + w]


def test_match_cost_is_the_windowed_feature_and_colour_dissimilarity():
    fl, fr = _views(0, seed=1)
    _, other = _views(0, seed=2)
    disp = torch.full((1, 24, 48), 3.0)
    cost = match_cost(fl, other, disp, COLOURS)
    # by hand: the right view 3 px to the left, outside on the first 3 columns
    warped = torch.zeros_like(other)
    warped[..., 3:] = other[..., :-3]
    per_pixel = 1 - (fl[:, :-3] * warped[:, :-3]).sum(1) + (fl[:, -3:] - warped[:, -3:]).abs().mean(1)
    per_pixel[..., :3] = OUTSIDE
    r = WINDOW // 2
    for y, x in ((0, 0), (10, 20), (23, 47), (5, 3)):
        window = per_pixel[0, max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1]
        assert torch.allclose(cost[0, y, x], window.mean(), atol=1e-5)
    assert torch.allclose(match_cost(fl, fr, disp * 0, COLOURS)[..., 3:], torch.zeros(1, 24, 45), atol=1e-5)


def test_a_wrong_patch_takes_its_surroundings_disparity_and_the_rest_stays():
    fl, fr = _views(5)
    truth = torch.full((1, 24, 48), 5.0)
    disp = truth.clone()
    disp[:, 10:13, 20:24] = 8.25  # a patch 3 px off, beyond a local step's reach
    disp[:, 2, 30] = 5.3  # within MIN_JUMP of its neighbours: left to the sub-pixel stage
    out = propagate(fl, fr, disp, 1, COLOURS)
    assert torch.equal(out[:, 10:13, 20:24], truth[:, 10:13, 20:24])
    assert out[0, 2, 30] == 5.3 and 5.3 - 5.0 < MIN_JUMP
    mask = torch.ones_like(disp, dtype=torch.bool)
    mask[:, 10:13, 20:24] = False
    assert torch.equal(out[mask], disp[mask])
    assert torch.equal(propagate(fl, fr, disp, 0, COLOURS), disp)


def test_propagation_only_moves_values_that_a_neighbour_had():
    fl, fr = _views(4, seed=3)
    disp = 2 + 6 * torch.rand(1, 24, 48, generator=torch.Generator().manual_seed(4))
    out = propagate(fl, fr, disp, 1, COLOURS)
    neighbours = torch.stack([disp] + [shifted(disp, dy, dx) for dy, dx in NEIGHBOURS])
    assert ((neighbours == out).any(0)).all()
    assert not torch.equal(out, disp)  # random values: some neighbour matches better somewhere


def _model(subpixel):
    cfg = load_config(
        "train", ["model=ea_psmnet_light", "model.max_disp=32", "model.refine=modes", f"model.subpixel={subpixel}"]
    )
    torch.manual_seed(0)
    return build_model(cfg.model)


def test_runtime_propagate_runs_after_the_stage_in_eval_only():
    model = _model("match").eval()
    torch.nn.init.normal_(model.subpixel.out.weight, std=0.05)
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    disp = 2 + 20 * torch.rand(1, 64, 128)  # varied, as a network's answer beside edges: neighbours to take
    stage = model.subpixel
    with torch.no_grad():
        guides = model.guides(left, right)
        staged = stage(disp, *guides)
        by_hand = propagate(stage.embed(guides[0]), stage.embed(guides[1]), staged, 2, COLOURS)
        assert not torch.allclose(by_hand, staged)
        assert torch.equal(model.matched(disp, guides), staged)  # off by default
        model.set_runtime(propagate=2)
        assert torch.allclose(model.matched(disp, guides), by_hand, atol=1e-5)
        out = model.infer(left, right).disparity  # the whole path runs it too
        model.set_runtime(propagate=0)
        assert torch.allclose(out, propagate(stage.embed(guides[0]), stage.embed(guides[1]),
                                             model.infer(left, right).disparity, 2, COLOURS), atol=1e-5)  # fmt: skip
        model.train()
        model.set_runtime(propagate=2)
        assert torch.equal(model.matched(disp, guides), stage(disp, *guides))  # training: the stage alone
    with pytest.raises(ConfigError, match="propagate=1: it needs a sub-pixel stage"):
        _model("none").set_runtime(propagate=1)
    with pytest.raises(ConfigError, match="propagate"):
        model.set_runtime(propagate=-1)


def test_stereo_eval_applies_and_records_the_stage_settings(sample_root, tmp_path):
    import json

    from stereo.config import to_plain
    from stereo.evaluate import evaluate
    from tests.conftest import make_tiny_cfg

    cfg = make_tiny_cfg(sample_root, "model.refine=modes", "model.subpixel=match")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    torch.nn.init.normal_(model.subpixel.out.weight, std=0.05)
    torch.save({"model": model.state_dict(), "model_config": to_plain(cfg.model), "step": 0}, tmp_path / "s.pt")
    reports = {}
    for label, extra in (("plain", []), ("both", ["subpixel_steps=3", "propagate=1"]), ("off", ["refinement=false"])):
        eval_cfg = load_config("eval", [f"checkpoint={tmp_path / 's.pt'}", f"data.root={sample_root}", "device=cpu",
                                        "data.limit=2", *extra])  # fmt: skip
        evaluate(eval_cfg, tmp_path / label, show_progress=False, tensorboard=False)
        reports[label] = json.loads((tmp_path / label / "metrics.json").read_text())
    assert (reports["plain"]["subpixel_steps"], reports["plain"]["propagate"]) == (1, 0)
    assert (reports["both"]["subpixel_steps"], reports["both"]["propagate"]) == (3, 1)
    assert reports["both"]["epe"] != reports["plain"]["epe"]  # the settings reached the network
    assert (reports["off"]["subpixel_steps"], reports["off"]["propagate"]) == (None, 0)
    assert reports["plain"]["subpixel_rounds"] is None  # no learned choice: no rounds
