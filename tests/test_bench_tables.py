"""The benchmarks' planning and table code, on made-up measurements (no timing here)."""

import pytest

from stereo.bench.attention import BenchAttentionConfig, _dot_tflop, _targets
from stereo.bench.harness import GiB, Timing, format_table
from stereo.bench.model import _ratios


def test_format_table_right_aligns_under_a_rule():
    text = format_table([["a", 1.5], ["bbb", 10]], ["name", "value"])
    lines = text.splitlines()
    assert lines == ["name  value", "----  -----", "   a    1.5", " bbb     10"]


def test_timing_median_and_json_round_trip():
    t = Timing([3.0, 1.0, 2.0, 10.0], interleaved=True, peak_bytes=5)
    assert t.median_s == pytest.approx(2.5)
    assert Timing.from_json(t.to_json()) == t and t.to_json()["median_s"] == pytest.approx(2.5)


def test_dot_product_flops_grow_with_positions_squared():
    cfg = BenchAttentionConfig(batch=1, key_channels=64, value_channels=128)
    n = 136 * 240
    assert _dot_tflop(cfg, n, False) == pytest.approx(2 * n * n * 192 / 1e12)
    assert _dot_tflop(cfg, 2 * n, True) == pytest.approx(4 * 3 * _dot_tflop(cfg, n, False))


def _case(median_s, peak):
    """A made-up attention record: one round in turns, and its memory alone."""
    return {"timing": Timing([median_s], interleaved=True).to_json(), "alone": {"timing": {"peak_bytes": peak}}}


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


def _model(variant, h, w, train, seconds, precision="fp32", peak=None, **extra):
    """A made-up model record: its case, its rounds in turns and (``peak``) its process peak alone."""
    case = {"label": f"{variant} {precision}", "height": h, "width": w, "train": train, "precision": precision}
    alone = {"timing": {"process_peak_bytes": peak}} if peak else None
    return {"variant": variant, "case": case, "timing": Timing(list(seconds), interleaved=True).to_json(),
            "alone": alone, **extra}  # fmt: skip


def test_model_ratios_compare_ea_psmnet_with_psmnet_at_the_same_size_and_mode():
    results = [
        _model("psmnet", 256, 512, False, [2.0, 4.0, 2.0], peak=100),
        _model("ea_psmnet", 256, 512, False, [1.5, 2.0, 1.0], peak=50),  # rounds: 0.75, 0.5, 0.5
        _model("ea_psmnet", 544, 960, False, [9.0]),  # no psmnet row
        _model("psmnet", 256, 512, True, [1.0], skipped="budget"),
    ]
    assert _ratios(results) == {
        "ea_psmnet/psmnet time 256x512 eval": 0.5,  # per round, not the ratio of medians (1.5 / 2.0)
        "ea_psmnet/psmnet process peak 256x512 eval": 0.5,
    }


def test_model_ratios_put_each_bf16_case_over_its_fp32_twin():
    results = [
        _model("ea_psmnet_light", 64, 128, False, [2.0]),
        _model("ea_psmnet_light", 64, 128, False, [1.0], "bf16"),
        _model("ea_psmnet_light", 64, 128, True, [4.0]),
        _model("ea_psmnet_light", 64, 128, True, [3.0], "bf16"),
        _model("ea_psmnet_light", 32, 128, True, [3.0], "bf16"),  # no fp32 twin
        _model("psmnet", 64, 128, False, [1.0], "bf16", skipped="budget"),
    ]
    assert _ratios(results) == {
        "ea_psmnet_light bf16/fp32 time 64x128 eval": 0.5,
        "ea_psmnet_light bf16/fp32 time 64x128 train": 0.75,
    }


def test_model_ratios_compare_each_refinement_with_the_light_model_and_variants_filter():
    from stereo.bench.model import main
    from stereo.errors import ConfigError

    results = [
        _model("ea_psmnet_light", 64, 128, False, [2.0]),
        _model("ea_psmnet_light refine=modes", 64, 128, False, [2.5]),
        _model("psmnet", 32, 64, False, [1.0]),
    ]
    assert _ratios(results) == {"ea_psmnet_light refine=modes/ea_psmnet_light time 64x128": 1.25}
    with pytest.raises(ConfigError, match="unknown 'ea_psmnet_lite'"):
        main(["variants=[ea_psmnet_lite]"])
