"""Sub-pixel refinement (model.refine): identity when untrained, gradients right, off = PSMNet unchanged."""

import pytest
import torch

from stereo.config import load_config
from stereo.errors import CheckpointError, ConfigError
from stereo.models import build_model
from stereo.models.refinement import ResidualRefinement


def _model(refine, seed=0):
    cfg = load_config("train", ["model=ea_psmnet_light", "model.max_disp=32", f"model.refine={refine}"])
    torch.manual_seed(seed)
    return build_model(cfg.model)


def test_untrained_refinement_returns_its_input_and_trains():
    ref = ResidualRefinement(channels=4, dilations=(1, 2))
    disp, img = torch.rand(2, 12, 20) * 30, torch.randn(2, 3, 12, 20)
    assert torch.equal(ref(disp, img), disp)  # zero-initialised head: exactly the input
    ref(disp, img).sum().backward()
    assert ref.head.weight.grad.abs().sum() > 0  # and it can learn from there


def test_refinement_gradients_match_finite_differences():
    torch.manual_seed(1)
    ref = ResidualRefinement(channels=3, dilations=(1, 2)).double()
    torch.nn.init.normal_(ref.head.weight, std=0.1)
    disp = (torch.rand(1, 6, 7, dtype=torch.float64) * 10 + 5).requires_grad_()
    img = torch.randn(1, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ref, (disp, img), eps=1e-6, atol=1e-5)


def test_refine_none_is_psmnet_and_residual_starts_equal():
    plain, refined = _model("none"), _model("residual")
    assert not any(k.startswith("refinement") for k in plain.state_dict())
    assert any(k.startswith("refinement") for k in refined.state_dict())
    missing = refined.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("refinement") for k in missing)
    left, right = torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        for m in (plain, refined):
            m.eval()
        assert torch.equal(plain(left, right), refined(left, right))  # untrained refinement = identity
        refined.train(), plain.train()
        heads_r, heads_p = refined(left, right), plain(left, right)
    assert len(heads_r) == len(heads_p) == 2
    for a, b in zip(heads_r, heads_p, strict=True):
        assert a.shape == (2, 64, 128) and torch.allclose(a, b)


def test_unknown_refine_kind_is_one_clear_error():
    with pytest.raises(ConfigError, match="refine"):
        build_model({"arch": "psmnet", "max_disp": 32, "refine": "convexx"})


def test_init_from_starts_from_the_weights_and_may_add_the_refinement(checkpoint, sample_root, tmp_path):
    from stereo.checkpoint import load_checkpoint
    from stereo.train import Trainer
    from tests.conftest import make_tiny_cfg

    saved = load_checkpoint(checkpoint)["model"]
    same = Trainer(make_tiny_cfg(sample_root, init_from=str(checkpoint)), tmp_path / "a").model.state_dict()
    assert all(torch.equal(same[k].cpu(), v) for k, v in saved.items())
    refined = Trainer(make_tiny_cfg(sample_root, "model.refine=residual", init_from=str(checkpoint)), tmp_path / "b")
    state = refined.model.state_dict()
    assert all(torch.equal(state[k].cpu(), v) for k, v in saved.items())
    assert torch.count_nonzero(state["refinement.head.weight"]) == 0  # the identity it starts as
    with pytest.raises(CheckpointError, match=r"init_from needs the same architecture.*max_disp: 32 -> 48"):
        Trainer(make_tiny_cfg(sample_root, "model.max_disp=48", init_from=str(checkpoint)), tmp_path / "c")
