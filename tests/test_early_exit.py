"""Early exit over the hourglass heads: off is today's output, per-image exits pick the right head."""

import pytest
import torch

from stereo.config import load_config
from stereo.models import build_model, configure_runtime, run
from stereo.models.regression import upsample_regress


def _model(**runtime):
    torch.manual_seed(0)
    cfg = load_config(
        "model/psmnet",
        [
            "max_disp=32",
            "feature.base_channels=4",
            "feature.blocks=[1,1,1,1]",
            "feature.pool_sizes=[8,4]",
            "feature.out_channels=8",
            "volume_channels=8",
        ],
    )
    model = build_model(cfg).eval()  # 3 hourglasses
    for m in model.modules():  # non-trivial BatchNorm statistics, so heads differ
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return configure_runtime(model, runtime)


def test_off_is_unchanged_and_a_never_met_threshold_equals_off(device):
    x, y = torch.rand(2, 3, 32, 64, device=device), torch.rand(2, 3, 32, 64, device=device)
    model = _model().to(device)
    off = run(model, x, y)
    assert off.heads == [3, 3]
    with torch.inference_mode():  # as run: without autograd, inference's own regression path
        torch.testing.assert_close(model.infer(x, y).disparity, off.disparity, rtol=0, atol=0)  # run: no change
    configure_runtime(model, {"early_exit": "confidence", "exit_threshold": 1.0})
    never = run(model, x, y)
    configure_runtime(model, {"early_exit": "head", "exit_head": 3})
    last = run(model, x, y)
    torch.testing.assert_close(never.disparity, off.disparity, rtol=0, atol=0)
    torch.testing.assert_close(last.disparity, off.disparity, rtol=0, atol=0)
    assert never.heads == last.heads == [3, 3]


def test_per_image_exits_answer_with_their_head():
    model = _model()
    x, y = torch.rand(3, 3, 32, 64), torch.rand(3, 3, 32, 64)
    with torch.no_grad():
        vol = model.cost_volume(x, y)
        every = model.aggregation(vol)  # all heads, whole batch
        plan = {1: torch.tensor([False, True, False]), 2: torch.tensor([True, False])}  # images 1, then 0, then 2
        answers, heads = model.aggregation.forward_early_exit([vol], lambda k, c: plan[k])
    assert heads == [2, 1, 3]
    for img, head in enumerate(heads):
        torch.testing.assert_close(answers[img], every[head - 1][img : img + 1], rtol=1e-5, atol=1e-5)


def test_fixed_head_and_confidence():
    x, y = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64)
    model = _model(early_exit="head", exit_head=1)
    first = run(model, x, y)
    with torch.no_grad():
        every = model.aggregation(model.cost_volume(x, y))
    assert first.heads == [1, 1]
    expected = upsample_regress(every[0], (32, 32, 64), chunk_rows=64)
    torch.testing.assert_close(first.disparity, expected, rtol=1e-5, atol=1e-4)
    configure_runtime(model, {"early_exit": "confidence", "exit_threshold": 1e-6})  # always confident
    again = run(model, x, y)
    torch.testing.assert_close(again.disparity, first.disparity, rtol=1e-5, atol=1e-4)
    assert again.heads == [1, 1]


def test_bad_settings():
    from stereo.errors import ConfigError

    with pytest.raises(ConfigError, match="exit_head=4: the model has heads 1..3"):
        _model(early_exit="head", exit_head=4)
