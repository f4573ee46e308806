"""Atomic writes: whole or nothing, temporary files cleaned, JSON always valid, image writes checked."""

import json

import numpy as np
import pytest

from stereo.errors import OutputError
from stereo.io import atomic_paths, atomic_write, remove_stale_temps, temp_path, write_image, write_json


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_group_is_all_or_nothing(tmp_path):
    a, b = tmp_path / "x.pfm", tmp_path / "x.png"
    with pytest.raises(OutputError, match="x.png: the writer produced no file"), atomic_paths([a, b]) as (ta, _tb):
        ta.write_bytes(b"1")  # the second file is never written
    assert not a.exists() and not b.exists() and not list(tmp_path.iterdir())


def test_temp_keeps_suffix_and_stale_temps_are_removed(tmp_path):
    t = temp_path(tmp_path / "last.pt")
    assert t.suffix == ".pt" and t.name.startswith(".last.tmp-")
    t.write_bytes(b"partial")  # as left by kill -9 during a write
    (tmp_path / "keep.pt").write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [t]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]


def test_json_is_valid_with_nan(tmp_path):
    write_json(tmp_path / "m.json", {"epe": float("nan"), "ok": 1.5, "rows": [float("inf")]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"epe": None, "ok": 1.5, "rows": [None]}


def test_image_write_is_checked(tmp_path):
    write_image(tmp_path / "ok.png", np.zeros((4, 4, 3), np.uint8))
    assert (tmp_path / "ok.png").stat().st_size > 0
    with pytest.raises(OutputError, match="cannot encode"):
        write_image(tmp_path / "bad.png", np.zeros((4, 4, 7), np.float64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


def test_unwritable_destination_names_the_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"cannot write .*file/out\.json"):
        write_json(tmp_path / "file" / "out.json", {})


def test_stale_temporaries_of_live_writers_are_kept(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)  # that process has ended
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = tmp_path / f".a.tmp-{dead}-abcdef.pfm"
        busy = tmp_path / f".b.tmp-{live.pid}-abcdef.pfm"
        for p in (stale, busy):
            p.write_bytes(b"x")
        assert remove_stale_temps(tmp_path) == [stale]
        assert busy.exists()
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temps(tmp_path) == [busy]
