"""The benchmark cases build the network they claim to measure (runtime, folded BatchNorm, training step)."""

import math

import torch

from stereo.bench.cases import _bench_network, flops_case, model_case
from stereo.config import load_config


def test_bench_network_applies_runtime_and_folding():
    net, max_disp = _bench_network("ea_psmnet_light", runtime={"memory_budget_gb": None}, fold_bn=True)
    assert max_disp == load_config("model/ea_psmnet_light").max_disp
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert net.runtime.memory_budget_gb is None
    plain, _ = _bench_network("ea_psmnet_light", overrides=["max_disp=96"])
    assert plain.max_disp == 96
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in plain.modules())


def test_model_case_eval_reports_bands_under_a_small_budget():
    net, _ = _bench_network("ea_psmnet_light")
    per_row = (64 // 4) * (net.max_disp // 4) * net.bytes_per_cell()  # 3-D bytes of one row at 1/4
    # 480 rows = 120 at 1/4, in bands of 8 rows (+ halo on each side), beside the full-resolution part
    budget = (net.bytes_2d_per_pixel() * 480 * 64 + (2 * net.band_halo + 8) * per_row) / 2**30
    r = model_case("ea_psmnet_light", 480, 64, runtime={"memory_budget_gb": budget}, fold_bn=True, runs=1, warmup=0)
    assert r["bands"] == 15 and r["times_s"][0] > 0 and not r["train"]
    whole = model_case("ea_psmnet_light", 480, 64, runtime={"memory_budget_gb": None}, runs=1, warmup=0)
    assert whole["bands"] == 1


def test_model_case_training_step_and_flops():
    r = model_case("ea_psmnet_light", 128, 256, train=True, batch=1, runs=1, warmup=0)
    assert r["train"] and r["parameters"] > 0 and math.isfinite(r["median_s"])
    small = flops_case("ea_psmnet_light", 64, 128)["flops"]
    large = flops_case("ea_psmnet_light", 128, 128)["flops"]
    assert small > 0 and abs(large / small - 2.0) < 0.05  # every layer is linear in the pixels


def test_api_case_runs_each_variant_at_a_tiny_size():
    from stereo.bench.cases import API_VARIANTS, api_case

    for v in API_VARIANTS:
        r = api_case(v, 32, 64, warmup=0, runs=1)
        assert r["variant"] == v and r["median_s"] > 0 and len(r["times_s"]) == 1
