"""The benchmarks' planning and table code, on made-up measurements (no timing here)."""

import pytest

from stereo.bench.attention import BenchAttentionConfig, _dot_tflop, _targets
from stereo.bench.harness import GiB, format_table, summarize
from stereo.bench.model import _ratios


def test_format_table_right_aligns_under_a_rule():
    text = format_table([["a", 1.5], ["bbb", 10]], ["name", "value"])
    lines = text.splitlines()
    assert lines == ["name  value", "----  -----", "   a    1.5", " bbb     10"]


def test_summarize_gives_median_and_spread():
    s = summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"median": pytest.approx(2.5), "min": 1.0, "max": 10.0, "n": 4}


def test_dot_product_flops_grow_with_positions_squared():
    cfg = BenchAttentionConfig(batch=1, key_channels=64, value_channels=128)
    n = 136 * 240
    assert _dot_tflop(cfg, n, False) == pytest.approx(2 * n * n * 192 / 1e12)
    assert _dot_tflop(cfg, 2 * n, True) == pytest.approx(4 * 3 * _dot_tflop(cfg, n, False))


def _case(median_s, peak):
    return {"median_s": median_s, "peak_bytes": peak}


def test_attention_targets_pass_and_fail_on_the_thresholds():
    by_key = {
        ("efficient", 136, 240, False): _case(0.001, 10 * 2**20),
        ("dot_product", 136, 240, False): _case(0.060, 400 * 2**20),  # 60x slower, 40x the memory
        ("efficient", 68, 120, False): _case(0.001, 1),
        ("dot_product", 68, 120, False): _case(0.005, 1),  # only 5x: fails ">= 10x"
        ("efficient", 272, 480, False): _case(0.010, 1),
        ("efficient", 544, 960, False): _case(0.060, 1),  # 6x for 4x positions: fails "<= 5x"
        ("efficient", 544, 960, True): _case(1.0, 1.5 * GiB),
    }
    got = {k: v[0] for k, v in _targets(by_key).items()}
    assert got == {
        "136x240 fwd: >= 50x faster": True,
        "136x240 fwd: >= 30x less memory": True,
        "68x120 fwd: >= 10x faster": False,
        "efficient fwd 544x960 / 272x480 time <= 5x": False,
        "efficient fwd+bwd at 544x960 <= 2 GB": True,
    }
    by_key[("dot_product", 136, 240, False)] = {"skipped": "over budget"}
    assert "136x240 fwd: >= 50x faster" not in _targets(by_key)  # a skipped case is no verdict


def test_model_ratios_compare_ea_psmnet_with_psmnet_at_the_same_size_and_mode():
    results = [
        {"label": "psmnet", "height": 256, "width": 512, "train": False, "median_s": 2.0, "process_peak_bytes": 100},
        {"label": "ea_psmnet", "height": 256, "width": 512, "train": False, "median_s": 1.5, "process_peak_bytes": 50},
        {"label": "ea_psmnet", "height": 544, "width": 960, "train": False, "median_s": 9.0},  # no psmnet row
        {"label": "psmnet", "height": 256, "width": 512, "train": True, "skipped": "budget"},
    ]
    assert _ratios(results) == {
        "ea_psmnet/psmnet time 256x512 eval": 0.75,
        "ea_psmnet/psmnet process peak 256x512 eval": 0.5,
    }


def test_model_ratios_put_each_bf16_case_over_its_fp32_twin():
    case = {"label": "ea_psmnet_light", "height": 64, "width": 128}
    results = [
        {**case, "train": False, "precision": "fp32", "median_s": 2.0},
        {**case, "train": False, "precision": "bf16", "median_s": 1.0},
        {**case, "train": True, "precision": "fp32", "median_s": 4.0},
        {**case, "train": True, "precision": "bf16", "median_s": 3.0},
        {**case, "height": 32, "train": True, "precision": "bf16", "median_s": 3.0},  # no fp32 twin
        {**case, "label": "psmnet", "train": False, "precision": "bf16", "skipped": "budget"},
    ]
    assert _ratios(results) == {
        "ea_psmnet_light bf16/fp32 time 64x128 eval": 0.5,
        "ea_psmnet_light bf16/fp32 time 64x128 train": 0.75,
    }


def test_model_ratios_compare_each_refinement_with_the_light_model_and_variants_filter():
    import pytest

    from stereo.bench.model import main
    from stereo.errors import ConfigError

    results = [
        {"label": "ea_psmnet_light", "height": 64, "width": 128, "train": False, "median_s": 2.0},
        {"label": "ea_psmnet_light refine=modes", "height": 64, "width": 128, "train": False, "median_s": 2.5},
        {"label": "psmnet", "height": 32, "width": 64, "train": False, "median_s": 1.0},
    ]
    assert _ratios(results) == {"ea_psmnet_light refine=modes/ea_psmnet_light time 64x128": 1.25}
    with pytest.raises(ConfigError, match="unknown 'ea_psmnet_lite'"):
        main(["variants=[ea_psmnet_lite]"])
