"""Outputs stay inside output_dir: names from wildcards (never ``..``), no symbolic link out of the
folder, discovery that terminates on link loops, one writer per folder, stale temporary files removed."""

import os

import cv2
import numpy as np
import pytest

from stereo.config import load_config
from stereo.data.pairs import find_pairs
from stereo.errors import OutputError
from stereo.evaluate import evaluate
from stereo.infer import infer as infer_cfg
from stereo.io import output_lock, remove_stale_temps, temp_path


def _img(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (32, 64, 3), dtype=np.uint8))


def _infer(checkpoint, left, right, out):
    cfg = load_config("infer", [f"checkpoint={checkpoint}", f"left={left}", f"right={right}", "device=cpu"])
    return infer_cfg(cfg, out)


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_dotdot_in_a_pattern_never_writes_outside_output_dir(checkpoint, tmp_path):
    (tmp_path / "in/L/x").mkdir(parents=True)
    (tmp_path / "in/R/x").mkdir(parents=True)
    _img(tmp_path / "Q/a.png")
    _img(tmp_path / "S/a.png", 1)
    before = set(_tree(tmp_path))
    res = _infer(checkpoint, tmp_path / "in/L/*/../../../Q/a.png", tmp_path / "in/R/*/../../../S/a.png",
                 tmp_path / "out")  # fmt: skip
    assert [r.name for r in res] == ["x"]  # what the wildcard matched, nothing of the '..' part
    new = set(_tree(tmp_path)) - before
    assert new and all(p.startswith("out") for p in new), new


def test_symlinked_subfolder_in_output_dir_is_refused_before_writing(checkpoint, tmp_path):
    for view in ("left", "right"):
        _img(tmp_path / view / "seq0/0001.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(elsewhere, tmp_path / "out/seq0")
    with pytest.raises(OutputError, match=r"out/seq0/0001\.pfm: it resolves to .*elsewhere.*outside output_dir"):
        _infer(checkpoint, tmp_path / "left", tmp_path / "right", tmp_path / "out")
    assert not list(elsewhere.iterdir())


def test_discovery_terminates_on_link_loops_and_keeps_each_file_once(tmp_path):
    for view in ("left", "right"):
        _img(tmp_path / view / "a/b/0001.png")
        os.symlink("..", tmp_path / view / "a/b/up")  # a loop
        os.symlink("../..", tmp_path / view / "a/b/up2")  # and another: globbing through both is 2^depth paths
        os.symlink("0001.png", tmp_path / view / "a/b/same.png")  # the same file under another name
    for spec in ("{}", "{}/**/*.png"):
        pairs = find_pairs(spec.format(tmp_path / "left"), spec.format(tmp_path / "right"))
        assert [p.left.resolve() for p in pairs] == [(tmp_path / "left/a/b/0001.png").resolve()]


def test_readme_glob_pairs_left_and_right_folders_per_scene(tmp_path):
    for scene in ("s1", "s2"):
        for view in ("left", "right"):
            for f in ("0001", "0002"):
                _img(tmp_path / "data" / scene / view / f"{f}.png")
    _img(tmp_path / "data/s2/left/.hidden.png")  # hidden files are skipped, as the shell skips them
    pairs = find_pairs(str(tmp_path / "data/*/left/*.png"), str(tmp_path / "data/*/right/*.png"))
    assert [p.name for p in pairs] == ["s1/0001", "s1/0002", "s2/0001", "s2/0002"]
    assert all(p.left.parent.name == "left" and p.right.parent.name == "right" for p in pairs)
    assert all(p.left.parent.parent == p.right.parent.parent and p.left.name == p.right.name for p in pairs)
    one = find_pairs(str(tmp_path / "data/*/left/0001.png"), str(tmp_path / "data/*/right/0001.png"))
    assert [p.name for p in one] == ["s1", "s2"]


def test_one_writer_per_output_dir_and_stale_temporaries_removed(checkpoint, sample_root, tmp_path):
    for view in ("left", "right"):
        _img(tmp_path / view / "seq0/0001.png")
    out = tmp_path / "out"
    stale = temp_path(out / "seq0/0001.pfm")  # as a killed writer leaves it
    keep = out / "seq0/.notes.tmp-keep.txt"  # not a name our writer makes: never touched
    with output_lock(out, "test"):  # another run holds the folder (its own clean-up happened on taking it)
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"half a file")
        keep.write_text("mine")
        with pytest.raises(OutputError, match=r"out is in use by another run \(pid \d+, test\)"):
            _infer(checkpoint, tmp_path / "left", tmp_path / "right", out)
        ecfg = load_config("eval", [f"checkpoint={checkpoint}", f"data.root={sample_root}", "data.limit=1",
                                    "device=cpu"])  # fmt: skip
        with pytest.raises(OutputError, match="in use by another run"):
            evaluate(ecfg, out, show_progress=False, tensorboard=False)
    assert stale.exists()
    _infer(checkpoint, tmp_path / "left", tmp_path / "right", out)  # the lock went with its holder
    assert not stale.exists() and keep.exists() and (out / "seq0/0001.pfm").is_file()
    assert remove_stale_temps(out, recursive=True) == []


def test_second_trainer_in_one_run_folder_is_refused(sample_root, tmp_path):
    from stereo.train import train
    from tests.conftest import make_tiny_cfg

    with output_lock(tmp_path / "run", "test"):
        with pytest.raises(OutputError, match="run is in use by another run"):
            train(make_tiny_cfg(sample_root, max_steps=1, val_every=0), tmp_path / "run")
    assert not (tmp_path / "run/checkpoints/last.pt").exists()


def test_package_files_are_never_overwritten(checkpoint, tmp_path):
    """export_weights once overwrote the shipped weights when out= was left out; now out= is required and
    no tool writes inside the installed package (weights, converted or averaged checkpoints, ONNX)."""
    import hashlib

    from stereo.checkpoint import convert_checkpoint
    from stereo.tools import average_weights, export_weights
    from stereo.weights import WEIGHTS_DIR, shipped_checkpoint
    from stereo.weights import export_weights as export_lib

    shipped = shipped_checkpoint()
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    with pytest.raises(SystemExit, match="out is required"):
        export_weights.main([f"checkpoint={checkpoint}"])
    attempts = [
        lambda: export_weights.main([f"checkpoint={checkpoint}", f"out={shipped}"]),
        lambda: export_lib(checkpoint, shipped, {}),
        lambda: convert_checkpoint(checkpoint, shipped),
        lambda: average_weights.main([f"checkpoints=[{checkpoint},{checkpoint}]", f"out={WEIGHTS_DIR / 'soup.pt'}"]),
    ]
    if __import__("importlib").util.find_spec("onnx"):
        from stereo.export import export_onnx

        attempts.append(lambda: export_onnx(checkpoint, WEIGHTS_DIR / "m.onnx"))
    for attempt in attempts:
        with pytest.raises(OutputError, match="inside the installed package"):
            attempt()
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in WEIGHTS_DIR.iterdir()) == sorted(["MODEL_CARD.md", shipped.name])
    export_lib(checkpoint, tmp_path / "w.pt", {})  # elsewhere is fine
