"""The 4-pixel pattern measure: a planted grid shows, a scene without one does not."""

import json

import numpy as np
import pytest

from stereo.grid_pattern import periodic_power


def smooth_maps(n=6, h=64, w=128, seed=0):
    """Piecewise-smooth disparities: slanted planes with steps, nothing periodic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = []
    for _ in range(n):
        d = 20 + rng.uniform(-0.1, 0.1) * x + rng.uniform(-0.1, 0.1) * y
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 30)
        d = d + 15 * ((x - cx) ** 2 + (y - cy) ** 2 < r**2) + rng.normal(0, 0.05, (h, w))
        maps.append(d)
    return maps


def test_a_planted_four_pixel_grid_shows_along_its_axis_only():
    maps = smooth_maps()
    x = np.arange(128)
    rows = [m + 0.5 * np.cos(2 * np.pi * x / 4)[None] for m in maps]  # varies along each row
    assert 0.5 < periodic_power(maps, -1) < 2 and 0.5 < periodic_power(maps, 0) < 2
    assert periodic_power(rows, -1) > 5 * periodic_power(maps, -1)  # 0.1 px would give 1.3x: edges are loud
    assert periodic_power(rows, 0) == pytest.approx(periodic_power(maps, 0), rel=1e-9)
    cols = [m.T.copy() for m in rows]  # the same grid along columns
    assert periodic_power(cols, 0) == pytest.approx(periodic_power(rows, -1), rel=1e-9)


def test_non_finite_values_and_bad_input():
    maps = smooth_maps(2)
    holes = [m.copy() for m in maps]
    holes[0][5, 7] = np.inf
    assert np.isfinite(periodic_power(holes, -1))
    with pytest.raises(ValueError, match="no disparity map"):
        periodic_power([])
    with pytest.raises(ValueError, match="same size"):
        periodic_power([np.zeros((8, 128)), np.zeros((8, 64))])
    with pytest.raises(ValueError, match="too short"):
        periodic_power([np.zeros((8, 24))])
    odd = [np.pad(m, ((0, 0), (0, 3)), mode="edge") + 0.5 * np.cos(np.pi * np.arange(131) / 2)[None] for m in maps]
    assert periodic_power(odd, -1) > 5  # lines of 131 px: the 4-px period falls at bin 32.75, read at 33
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        periodic_power([np.zeros((2, 8, 128))])


def test_tool_measures_a_checkpoint_and_its_ground_truth(sample_root, checkpoint, tmp_path, capsys):
    from stereo.tools.grid_pattern import main

    out = tmp_path / "grid.json"
    main([f"checkpoint={checkpoint}", f"root={sample_root}", "limit=2", f"out={out}"])
    r = json.loads(out.read_text())
    assert r["pairs"] == 2 and r["period_px"] == 4 and r["regression"] == "soft_argmin"
    for key in ("prediction", "ground_truth"):
        assert all(np.isfinite(v) and v > 0 for v in r[key].values())
    assert "along rows" in capsys.readouterr().out
