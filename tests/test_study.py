"""The study collector: grouping over seeds, the equal-budget check, Welch's t, overrides that rebuild a run's model."""

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from stereo.config import load_config
from stereo.models import build_model
from stereo.study import collect_runs, group_runs, model_overrides, welch


def _fake_run(root, kind, seed, epe, bad2, sps, step=10, status="finished"):
    cfg = load_config("train", ["model=ea_psmnet_light", f"model.feature.attention.0.kind={kind}", f"seed={seed}"])
    run = root / f"{kind}/seed{seed}"
    run.mkdir(parents=True)
    OmegaConf.save(cfg, run / "config.yaml")
    summary = {"status": status, "step": step, "seconds_per_step": sps, "train_seconds": sps * step,
               "val": {"epe": epe, "bad2": bad2, "pairs": 5},
               "hparams": {"attention": f"{kind}@layer4", "seed": seed, "parameters": 100 + len(kind)}}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))


def test_seeds_are_averaged_per_variant(tmp_path):
    none = [(3.0, 30.0, 1.0), (3.5, 33.0, 1.2), (2.9, 29.0, 1.1)]
    eff = [(2.5, 25.0, 1.3), (2.7, 26.0, 1.4), (2.4, 24.5, 1.2)]
    for i, (e, b, s) in enumerate(none):
        _fake_run(tmp_path, "none", i, e, b, s)
    for i, (e, b, s) in enumerate(eff):
        _fake_run(tmp_path, "efficient", i, e, b, s)
    _fake_run(tmp_path, "linear", 0, 9.0, 90.0, 1.0, step=7, status="interrupted by signal 15")
    runs = collect_runs(tmp_path)
    assert len(runs) == 7
    rows = {r["variant"]: r for r in group_runs(runs)}
    assert set(rows) == {"none@layer4", "efficient@layer4"}  # the interrupted run is left out
    for name, vals in (("none@layer4", none), ("efficient@layer4", eff)):
        a = np.array(vals)
        assert rows[name]["epe"] == pytest.approx((a[:, 0].mean(), a[:, 0].std(ddof=1)))
        assert rows[name]["bad2"] == pytest.approx((a[:, 1].mean(), a[:, 1].std(ddof=1)))
        assert rows[name]["seconds_per_step"][0] == pytest.approx(a[:, 2].mean())
        assert rows[name]["seeds"] == [0, 1, 2]
    w = welch([v[0] for v in none], [v[0] for v in eff])
    a, b = np.array([v[0] for v in none]), np.array([v[0] for v in eff])
    se = np.sqrt(a.var(ddof=1) / 3 + b.var(ddof=1) / 3)
    assert w["diff"] == pytest.approx(b.mean() - a.mean()) and w["t"] == pytest.approx((b.mean() - a.mean()) / se)
    assert welch([1.0], [2.0, 3.0]) is None


def test_unequal_budgets_are_refused(tmp_path):
    _fake_run(tmp_path, "none", 0, 3.0, 30.0, 1.0, step=10)
    _fake_run(tmp_path, "efficient", 0, 3.0, 30.0, 1.0, step=12)
    with pytest.raises(ValueError, match="not an equal budget"):
        group_runs(collect_runs(tmp_path))


def test_overrides_rebuild_the_run_model():
    base = OmegaConf.to_container(load_config("model/ea_psmnet_light"))
    run = load_config("train", ["model=ea_psmnet_light", "model.feature.attention.0.kind=multires",
                                "model.feature.attention.0.heads=4", "model.max_disp=64"]).model  # fmt: skip
    over = model_overrides(OmegaConf.to_container(run), base)
    assert sorted(over) == ["feature.attention.0.heads=4", "feature.attention.0.kind=multires", "max_disp=64"]
    rebuilt = load_config("model/ea_psmnet_light", over)
    assert OmegaConf.to_container(rebuilt) == OmegaConf.to_container(run)
    n = [sum(p.numel() for p in build_model(c).parameters()) for c in (rebuilt, run)]
    assert n[0] == n[1]


@pytest.mark.slow
def test_sweep_to_markdown(sample_root, tmp_path):
    """The documented path: a Hydra multirun of the study overlay, then the collector's markdown."""
    import subprocess
    import sys

    from tests.conftest import REPO

    sweep = [sys.executable, str(REPO / "scripts/train.py"), "-m", "experiment=attention_study",
             f"data.root={sample_root}", f"val.root={sample_root}", "data.crop_size=[32,64]", "val.limit=2",
             "train.max_steps=2", "train.warmup_steps=1", "train.num_workers=0", "model.max_disp=32",
             f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    proc = subprocess.run([*sweep, "model.feature.attention.0.kind=none,efficient", "seed=1,2"], capture_output=True,
                          text=True, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = sorted(
        p.parent.relative_to(tmp_path / "sweep").as_posix() for p in (tmp_path / "sweep").rglob("summary.json")
    )
    assert found == ["efficient@layer4/seed1", "efficient@layer4/seed2", "none@layer4/seed1", "none@layer4/seed2"]
    md = tmp_path / "study.md"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/attention_study.py"), f"sweep_dir={tmp_path / 'sweep'}",
                           "bench_size=[32,64]", "bench_runs=1", f"out_md={md}", f"out_json={tmp_path / 's.json'}"],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = md.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| none@layer4") or line.startswith("| efficient@")]
    assert len(rows) == 2 and "t = " in rows[1] and "2 steps" in text
    saved = json.loads((tmp_path / "s.json").read_text())["rows"]
    for r in saved:
        runs = [json.loads((Path(p) / "summary.json").read_text()) for p in r["run_dirs"]]
        assert r["epe"][0] == pytest.approx(np.mean([x["val"]["epe"] for x in runs]))
        assert r["train_step_seconds"] > 0 and len(r["train_step_times"]) == 1
