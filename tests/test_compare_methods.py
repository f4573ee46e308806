"""scripts/compare_methods.py: every row is stereo-eval's result for the same settings."""

import json

import pytest

from stereo.config import load_config
from stereo.errors import ConfigError
from stereo.evaluate import evaluate
from stereo.tools.compare_methods import main


def test_rows_equal_stereo_eval_for_each_method_pass_and_region(sample_root, checkpoint, tmp_path, capsys):
    out = tmp_path / "compare.json"
    main([f"root={sample_root}", f"checkpoints={{tiny: {checkpoint}}}", "passes=[clean,final]", "region=nonocc",
          "max_disp=32", f"out={out}"])  # fmt: skip
    rows = json.loads(out.read_text())["results"]
    assert [(r["label"], r["render_pass"]) for r in rows] == [
        ("SGBM (OpenCV, 3-way)", "clean"), ("SGBM (OpenCV, 3-way)", "final"), ("tiny", "clean"), ("tiny", "final")
    ]  # fmt: skip
    for r in rows:
        method = ["method=sgbm"] if r["method"] == "sgbm" else [f"checkpoint={checkpoint}"]
        cfg = load_config("eval", [*method, f"data.root={sample_root}", f"data.render_pass={r['render_pass']}",
                                   "max_disp=32", "data.region=nonocc", "device=cpu"])  # fmt: skip
        direct = evaluate(cfg, tmp_path / f"direct{rows.index(r)}", show_progress=False, tensorboard=False)
        assert r["region"] == "nonocc" and r["pairs"] == direct.pairs == 4
        keys = ("epe", "bad05", "bad1", "bad2", "bad3", "d1")
        assert [r[k] for k in keys] == pytest.approx(list(direct.metrics().values()))
    table = capsys.readouterr().out
    assert "pixels visible in both views" in table and f"| tiny | final | {rows[3]['epe']:.2f} |" in table


def test_nothing_to_compare_is_a_config_error(sample_root, tmp_path):
    with pytest.raises(ConfigError, match="nothing to compare"):
        main([f"root={sample_root}", "sgbm=false", f"out={tmp_path / 'c.json'}"])


def test_a_checkpoint_entry_carries_runtime_overrides(sample_root, checkpoint, tmp_path):
    out = tmp_path / "compare.json"
    main([f"root={sample_root}", f"checkpoints={{plain: {checkpoint}, local: '{checkpoint} regression=local'}}",
          "sgbm=false", "passes=[clean]", "max_disp=32", f"out={out}"])  # fmt: skip
    rows = {r["label"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["plain"]["regression"] == "soft_argmin" and rows["local"]["regression"] == "local"
    cfg = load_config("eval", [f"checkpoint={checkpoint}", "regression=local", f"data.root={sample_root}",
                               "data.render_pass=clean", "max_disp=32", "device=cpu"])  # fmt: skip
    direct = evaluate(cfg, tmp_path / "direct", show_progress=False, tensorboard=False)
    assert rows["local"]["epe"] == pytest.approx(direct.epe) and rows["local"]["epe"] != rows["plain"]["epe"]


@pytest.mark.parametrize(
    ("entry", "match"),
    [("'shipped data.root=/elsewhere'", "data.root is set by compare_methods"),
     ("'shipped polish'", "'polish' is not a key=value override"),
     ("'polish=zncc'", "expected a checkpoint path first")],
)  # fmt: skip
def test_a_bad_checkpoint_entry_is_a_config_error(sample_root, tmp_path, entry, match):
    with pytest.raises(ConfigError, match=match):
        main([f"root={sample_root}", f"checkpoints={{x: {entry}}}", "sgbm=false", f"out={tmp_path / 'c.json'}"])
