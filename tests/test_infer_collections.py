"""stereo-infer beyond one folder of pairs: frames holding both views (layout=sbs|tb), shards of a large
collection that partition it, and skip_existing resuming a killed job."""

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from stereo.config import InferAppConfig, check_config, load_config
from stereo.data.pairs import Pair
from stereo.data.pfm import read_pfm
from stereo.errors import ConfigError
from stereo.infer import _local_device, infer, select_shard
from tests.conftest import REPO


def _pair(sample_root, i=0):
    """A generated test pair (left, right) as uint8 arrays."""
    lefts = sorted((sample_root / "FlyingThings3D" / "frames_cleanpass" / "TEST").rglob("left/*.png"))
    left = lefts[i]
    return (np.asarray(Image.open(left).convert("RGB")),
            np.asarray(Image.open(left.parent.parent / "right" / left.name).convert("RGB")))  # fmt: skip


def _run(checkpoint, out, *args):
    return infer(load_config("infer", [f"checkpoint={checkpoint}", "device=cpu", *args]), out)


@pytest.mark.parametrize("layout", ["sbs", "tb"])
def test_a_frame_gives_the_disparity_of_its_two_views_given_apart(checkpoint, sample_root, tmp_path, layout):
    left, right = _pair(sample_root)
    Image.fromarray(left).save(tmp_path / "l.png")
    Image.fromarray(right).save(tmp_path / "r.png")
    frame = np.concatenate([left, right], axis=1 if layout == "sbs" else 0)
    (tmp_path / "frames").mkdir()
    Image.fromarray(frame).save(tmp_path / "frames" / "f.png")
    _run(checkpoint, tmp_path / "apart", f"left={tmp_path / 'l.png'}", f"right={tmp_path / 'r.png'}")
    [r] = _run(checkpoint, tmp_path / "frame", f"left={tmp_path / 'frames'}", f"layout={layout}")
    assert r.size == list(left.shape[:2])
    assert np.array_equal(read_pfm(tmp_path / "frame" / "f.pfm"), read_pfm(tmp_path / "apart" / "l.pfm"))


def test_frames_that_do_not_split_and_layouts_without_their_keys_are_refused(checkpoint, tmp_path):
    Image.fromarray(np.zeros((64, 129, 3), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(Exception, match=r"odd.png: a side-by-side frame needs an even width"):
        _run(checkpoint, tmp_path / "out", f"left={tmp_path / 'odd.png'}", "layout=sbs")
    assert not (tmp_path / "out" / "odd.pfm").exists()
    for args, message in ((["left=a.png"], "right is required"),
                          (["left=a.png", "right=b.png", "layout=sbs"], "right=b.png with layout=sbs"),
                          (["left=a.png", "right=b.png", "shard=2/2"], r"shard=2/2: expected i/n with 0 <= i < n"),
                          (["left=a.png", "right=b.png", "shard=1-2"], r"shard=1-2: expected i/n")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            check_config(load_config("infer", args), InferAppConfig)


def test_shards_partition_the_pairs_and_auto_reads_only_named_variables(monkeypatch):
    pairs = [Pair(f"{k}.png", f"{k}.png", f"p{k:02d}") for k in range(7)]  # type: ignore[arg-type]
    for key in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(key, raising=False)
    parts = [select_shard(pairs, f"{i}/3")[0] for i in range(3)]
    names = [p.name for part in parts for p in part]
    assert sorted(names) == [p.name for p in pairs] and len(set(names)) == 7  # every pair once
    assert select_shard(list(reversed(pairs)), "1/3")[0] == parts[1]  # by name, not by discovery order
    assert select_shard(pairs, None) == (pairs, None)
    with pytest.raises(ConfigError, match="shard=auto: neither RANK/WORLD_SIZE"):
        select_shard(pairs, "auto")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")  # --array=1-3
    assert select_shard(pairs, "auto") == (parts[2], (2, 3))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")  # torchrun's variables first
    assert select_shard(pairs, "auto") == (parts[0], (0, 3))
    monkeypatch.setenv("LOCAL_RANK", "1")
    cpu = torch.device("cpu")
    assert _local_device(cpu, "auto", "auto") == cpu  # only a CUDA device becomes the process's own GPU
    if torch.cuda.is_available():
        assert _local_device(torch.device("cuda"), "auto", "auto").index == 1 % torch.cuda.device_count()
        assert _local_device(torch.device("cuda:0"), "cuda:0", "auto").index == 0  # a named device stays


def _folder_of_pairs(sample_root, root, n):
    for k in range(n):
        left, right = _pair(sample_root, k % 4)
        for side, img in (("left", left), ("right", right)):
            (root / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / side / f"{k:02d}.png")


def test_shards_write_one_folder_together(checkpoint, sample_root, tmp_path):
    _folder_of_pairs(sample_root, tmp_path / "in", 5)
    common = [f"left={tmp_path / 'in' / 'left'}", f"right={tmp_path / 'in' / 'right'}"]
    done = [r.name for i in range(2) for r in _run(checkpoint, tmp_path / "out", *common, f"shard={i}/2")]
    assert sorted(done) == [f"{k:02d}" for k in range(5)]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.pfm")) == [f"{k:02d}.pfm" for k in range(5)]
    assert not list((tmp_path / "out").glob(".stereo.lock*"))  # each shard's lock went with it


@pytest.mark.slow
def test_a_killed_run_resumes_with_skip_existing_writing_each_pair_once(checkpoint, sample_root, tmp_path):
    _folder_of_pairs(sample_root, tmp_path / "in", 12)
    args = [sys.executable, str(REPO / "scripts" / "infer.py"), f"checkpoint={checkpoint}", "device=cpu",
            f"left={tmp_path / 'in' / 'left'}", f"right={tmp_path / 'in' / 'right'}", f"output_dir={tmp_path / 'out'}",
            "skip_existing=true"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # kill it once a few pairs are written
        if line.startswith("03:"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.pfm")}
    assert 4 <= len(first) < 12
    rest = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert f"skip_existing: {len(first)} of 12 pair(s) done already" in rest
    assert sorted(p.name for p in (tmp_path / "out").glob("*.pfm")) == [f"{k:02d}.pfm" for k in range(12)]
    assert all((tmp_path / "out" / name).stat().st_mtime_ns == t for name, t in first.items())  # not rewritten
    assert [m.group(1) for m in map(re.compile(r"^(\d\d): \d+x\d+, ").match, rest.splitlines()) if m] == [
        f"{k:02d}" for k in range(12) if f"{k:02d}.pfm" not in first
    ]
    assert not list((tmp_path / "out").rglob(".*.tmp-*"))  # no half-written file left
