"""Every benchmark runs end to end at its smallest size, as a user runs it (``scripts/bench_*.py``), and
writes its JSON: the numbers are not checked here (benchmarks measure; tests do not time), only that each
measured something and wrote it."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SMOKE = {
    "bench_attention.py": (["sizes=[[8,16]]", "channels=16", "key_channels=8", "value_channels=16", "runs=1",
                            "warmup=0", "kinds=[linear]", "sdpa=false"], "results"),
    "bench_model.py": (["eval_sizes=[[64,128]]", "train_size=[64,256]", "train_models=[ea_psmnet_light]", "runs=1",
                        "warmup=0"], "results"),
    "bench_inference.py": (["model=ea_psmnet_light", "sizes=[[64,128]]", "runs=1", "large_runs=1", "budgets=[]",
                            "budget_sizes=[]", "compile_sizes=[]", "onednn_sizes=[]", "train=false"], "eval"),
    "bench_data.py": (["repeats=1", "threads=1", "loader_pairs=2", "loader_samples=2", "crop=[64,128]", "gen_pairs=2",
                       "gen_repeats=1"], "generator"),
    "bench_onnx.py": (["models=[ea_psmnet_light]", "checkpoints=[shipped]", "sizes=[[128,128]]", "runs=1", "warmup=0",
                      "profile=true"],
                      "profiles"),
    "bench_api.py": (["height=32", "width=64", "runs=1", "warmup=0"], "results"),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_each_benchmark_runs_at_its_smallest_size(script, tmp_path):
    args, key = SMOKE[script]
    out = tmp_path / "out.json"
    extra = [f"workdir={tmp_path / 'work'}"] if script == "bench_data.py" else []
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args, *extra, f"out={out}"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result[key], result
    assert result["environment"]["torch"] and result["config"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", *(["work"] if extra else [])])


@pytest.mark.slow
def test_bench_model_times_variants_in_turns_and_ratios_are_per_round(tmp_path):
    import statistics

    out = tmp_path / "out.json"
    variants = "variants=['ea_psmnet_light','ea_psmnet_light refine=modes']"
    args = ["eval_sizes=[[64,128]]", "train_models=[]", "runs=3", "warmup=0", "memory=false", variants]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_model.py"), *args, f"out={out}"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    light, modes = result["results"]
    a, b = light["timing"], modes["timing"]
    assert a["interleaved"] and b["interleaved"] and len(a["times_s"]) == len(b["times_s"]) == 3
    assert light["parameters"] < modes["parameters"] and light["alone"] is None
    per_round = statistics.median(m / x for m, x in zip(b["times_s"], a["times_s"], strict=True))
    assert result["ratios"]["ea_psmnet_light refine=modes/ea_psmnet_light time 64x128"] == pytest.approx(per_round)


@pytest.mark.slow
def test_the_speed_accuracy_chart_runs_on_a_generated_set_and_draws(sample_root, tmp_path):
    import torch

    from stereo.config import load_config, to_plain
    from stereo.models import build_model

    cfg = load_config("model/ea_psmnet_fast")
    fast = tmp_path / "fast.pt"
    torch.save({"model": build_model(cfg).state_dict(), "model_config": to_plain(cfg), "step": 0}, fast)
    out, png = tmp_path / "chart.json", tmp_path / "chart.png"
    args = [f"root={sample_root.parent}", f"benchmarks=[{sample_root.name}]", "limit=1", "size=[64,256]", "runs=1",
            "warmup=0", "precisions=[fp32]", f"out={out}", f"plot={png}", f"fast={fast}"]  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_chart.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    shipped, fast_label, ea = "shipped (ea_psmnet_light) fp32", "fast (ea_psmnet_fast) fp32", "ea_psmnet"
    assert set(result["timings"]) == {"SGBM (OpenCV) -", shipped, f"{ea} (random weights: time only) fp32", fast_label}
    assert all(t["median_s"] > 0 for t in result["timings"].values())
    assert list(result["ratios"]) == [f"{shipped} over SGBM", f"{fast_label} over SGBM"]
    assert {(r["method"], r["pairs"]) for r in result["accuracy"]} == {
        ("SGBM (OpenCV)", 1), ("shipped (ea_psmnet_light)", 1), ("fast (ea_psmnet_fast)", 1)}  # fmt: skip
    assert result["environment"]["cpu_flags"] is not None and result["date"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote" in proc.stdout


def test_the_chart_names_the_command_that_builds_a_missing_benchmark(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_chart.py"), f"root={tmp_path}",
                           "benchmarks=[generated-v2/272x480]", f"out={tmp_path / 'c.json'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0 and not (tmp_path / "c.json").exists()
    assert "make_generated_benchmark.py name=generated-v2" in proc.stderr and "Traceback" not in proc.stderr
