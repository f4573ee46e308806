"""The README's "Your own images" section, run as written: its Python block and every stereo-infer
command of its command-line block, on generated pairs saved under the names the README uses."""

import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _section_blocks(lang: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Your own images") : text.index("## What to expect")]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def own_images(sample_root, tmp_path_factory):
    """A folder with left.png/right.png, l.png/r.png, pairs/{left,right}/, data/*/{left,right}/ and a
    Middlebury calib.txt, made from two generated test pairs."""
    work = tmp_path_factory.mktemp("own")
    lefts = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[:2]
    rights = [p.parent.parent / "right" / p.name for p in lefts]
    for name_l, name_r in (("left.png", "right.png"), ("l.png", "r.png")):
        shutil.copy(lefts[0], work / name_l)
        shutil.copy(rights[0], work / name_r)
    for i, (lp, rp) in enumerate(zip(lefts, rights, strict=True)):
        for root in (work / "pairs", work / "data" / f"scene{i}"):
            (root / "left").mkdir(parents=True, exist_ok=True)
            (root / "right").mkdir(parents=True, exist_ok=True)
            shutil.copy(lp, root / "left" / f"{i:04d}.png")
            shutil.copy(rp, root / "right" / f"{i:04d}.png")
    (work / "calib.txt").write_text("cam0=[500 0 64; 0 500 32; 0 0 1]\ncam1=[500 0 64; 0 500 32; 0 0 1]\n"
                                    "doffs=0\nbaseline=100\nwidth=128\nheight=64\n")  # fmt: skip
    return work


def test_python_block_runs(own_images, monkeypatch):
    (code,) = _section_blocks("python")
    monkeypatch.chdir(own_images)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102  (the README's own example)
    result = scope["result"]
    assert result.disparity.shape == (64, 128) and result.confidence.shape == (64, 128)


@pytest.mark.slow
def test_command_line_block_runs(own_images):
    (block,) = _section_blocks("bash")
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("stereo-infer")]
    assert len(commands) >= 5
    for command in commands:
        args = shlex.split(command)[1:]
        out = own_images / "out"
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run([sys.executable, str(REPO / "scripts/infer.py"), *args], cwd=own_images,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        if "--help" in args:
            assert "left=" in proc.stdout and "Keys" in proc.stdout
            continue
        written = {p.name for p in out.rglob("*") if p.is_file()}
        assert any(n.endswith(".pfm") for n in written), (command, written)
        if "point_cloud=true" in args:
            assert any(n.endswith(".ply") for n in written) and any("_confidence" in n for n in written)
