"""The benchmark cases build the network they claim to measure (runtime, folded BatchNorm, training step)."""

import math

import pytest
import torch

from stereo.bench.cases import _bench_network, flops_case, model_case, model_interleaved
from stereo.config import load_config


def test_bench_network_applies_runtime_and_folding():
    net, max_disp = _bench_network("ea_psmnet_light", runtime={"memory_budget_gb": None}, fold_bn=True)
    assert max_disp == load_config("model/ea_psmnet_light").max_disp
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert net.runtime.memory_budget_gb is None
    plain, _ = _bench_network("ea_psmnet_light", overrides=["max_disp=96"])
    assert plain.max_disp == 96
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in plain.modules())


ONCE = {"runs": 1, "warmup": 0}


def test_model_case_eval_reports_bands_under_a_small_budget():
    net, _ = _bench_network("ea_psmnet_light")
    per_row = (64 // 4) * (net.max_disp // 4) * net.bytes_per_cell()  # 3-D bytes of one row at 1/4
    # 480 rows = 120 at 1/4, in bands of 8 rows (+ halo on each side), beside the full-resolution part
    budget = (net.bytes_2d_per_pixel() * 480 * 64 + (2 * net.band_halo + 8) * per_row) / 2**30
    case = {"label": "banded", "model": "ea_psmnet_light", "height": 480, "width": 64, "fold_bn": True,
            "runtime": {"memory_budget_gb": budget}}  # fmt: skip
    r = model_case(case, ONCE)
    assert r["bands"] == 15 and r["timing"]["times_s"][0] > 0 and not r["case"]["train"]
    assert r["timing"]["peak_bytes"] is not None and not r["timing"]["interleaved"]
    whole = model_case({**case, "label": "whole", "fold_bn": False, "runtime": {"memory_budget_gb": None}}, ONCE)
    assert whole["bands"] == 1


def test_model_case_training_step_and_flops():
    r = model_case({"label": "t", "model": "ea_psmnet_light", "height": 128, "width": 256, "train": True}, ONCE)
    assert r["case"]["train"] and r["parameters"] > 0 and math.isfinite(r["timing"]["median_s"])
    small = flops_case("ea_psmnet_light", 64, 128)["flops"]
    large = flops_case("ea_psmnet_light", 128, 128)["flops"]
    assert small > 0 and abs(large / small - 2.0) < 0.05  # every layer is linear in the pixels


def test_interleaved_cases_share_their_rounds_and_only_they_give_ratios():
    from stereo.bench.harness import Timing, ratio

    cases = [{"label": "eval", "model": "ea_psmnet_light", "height": 32, "width": 256},
             {"label": "train", "model": "ea_psmnet_light", "height": 32, "width": 256, "train": True}]  # fmt: skip
    r = model_interleaved(cases, {"runs": 3, "warmup": 0})
    a, b = (Timing.from_json(r["timings"][k]) for k in ("eval", "train"))
    assert a.interleaved and b.interleaved and len(a.times_s) == len(b.times_s) == 3
    assert r["parameters"]["eval"] == r["parameters"]["train"] > 0
    rounds = sorted(x / y for x, y in zip(a.times_s, b.times_s, strict=True))
    assert ratio(a, b) == rounds[1]  # the median over rounds of the ratio within a round
    with pytest.raises(ValueError, match="interleave"):
        ratio(Timing(a.times_s), b)  # a separate measurement is never a ratio's term


def test_oneDNN_off_is_scoped_to_the_step():
    from stereo.bench.cases import NetworkCase

    step, _, _ = NetworkCase("off", "ea_psmnet_light", 32, 64, onednn=False).build(torch.device("cpu"))
    before = torch.backends.mkldnn.enabled
    step()
    assert torch.backends.mkldnn.enabled == before  # the process's setting is as it was


def test_api_interleaved_runs_each_variant_at_a_tiny_size():
    from stereo.bench.cases import API_VARIANTS, api_interleaved

    r = api_interleaved(32, 64, {"runs": 1, "warmup": 0})
    assert set(r["timings"]) == set(API_VARIANTS)
    assert all(t["median_s"] > 0 and len(t["times_s"]) == 1 and t["interleaved"] for t in r["timings"].values())
