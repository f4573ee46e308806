"""Every command that README.md and docs/*.md show composes: its config (apps) or its keys (tools) pass
the same checks as on the command line, so a renamed key or a removed option cannot leave a documented
command behind. Multi-run sweeps (-m a=x,y) compose for every value; torchrun lines as the script they
launch. (README's own-images commands also run: tests/test_readme.py.)"""

import importlib
import itertools
import re
import shlex

import pytest

from stereo.config import SCHEMAS, check_config, load_config
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
APPS = {"stereo-train": "train", "stereo-eval": "eval", "stereo-infer": "infer", "stereo-export": "export",
        "stereo-app": "app", "train.py": "train", "evaluate.py": "eval", "infer.py": "infer", "export.py": "export",
        "app.py": "app"}  # fmt: skip
NOT_CONFIGS = {"setup.sh", "test.sh", "demo.sh"}  # shell scripts without keys


def documented_commands() -> list[tuple[str, str, str, list[str]]]:
    """(doc, command line, program, arguments) of every stereo command in a shell block of the docs."""
    found = []
    for doc in DOCS:
        for block in _shell_blocks(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue
                for i, w in enumerate(words):
                    name = w.rsplit("/", 1)[-1]
                    if (w.startswith("stereo-") and i == 0) or (
                        w.startswith("scripts/") and w.endswith((".py", ".sh"))
                    ):
                        if name not in NOT_CONFIGS:
                            found.append((doc.name, line.strip(), name, words[i + 1 :]))
                        break
    return found


def _shell_blocks(text: str) -> list[str]:
    """The fenced blocks of a Markdown text whose language is a shell (or not given)."""
    blocks, current, lang = [], None, ""
    for line in text.splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence and current is None:
            current, lang = [], fence.group(1)
        elif fence:
            if lang in ("", "bash", "sh", "shell", "console"):
                blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return blocks


COMMANDS = documented_commands()


def _sweep(args: list[str]) -> list[list[str]]:
    """Hydra's -m sweeps (key=a,b) as one argument list per combination."""
    if "-m" not in args and "--multirun" not in args:
        return [args]
    args = [a for a in args if a not in ("-m", "--multirun")]
    options = [[f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")]
               if "=" in a and "," in a and "[" not in a else [a] for a in args]  # fmt: skip
    return [list(c) for c in itertools.product(*options)]


def test_the_docs_show_commands():
    programs = {p for _, _, p, _ in COMMANDS}
    assert {"stereo-infer", "stereo-train", "stereo-eval", "stereo-export", "infer.py", "train.py"} <= programs
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize(("doc", "line", "program", "args"), COMMANDS, ids=[f"{d}:{c[:60]}" for d, c, _, _ in COMMANDS])
def test_documented_command_composes(doc, line, program, args):
    helps = [a for a in args if a in ("--help", "-h")]
    args = [a for a in args if a not in helps]
    for one in _sweep(args):
        if program in APPS:
            app = APPS[program]
            cfg = load_config(app, one)
            if not helps:  # --help composes without the required keys
                check_config(cfg, SCHEMAS[app])
        else:
            from stereo.cli import parse_overrides

            module = importlib.import_module(f"stereo.tools.{program.removesuffix('.py')}")
            schema = getattr(module, re.search(r"parse_overrides\((\w+)", open(module.__file__).read()).group(1))
            try:
                parse_overrides(schema, one)
            except SystemExit as e:
                pytest.fail(f"{doc}: {line}: {e}")


# ---- Running them: every CPU command, on generated data laid out as the docs name it ---------------------

# Values that shorten a run (steps, sizes, counts); a command's own value of such a key is replaced.
SHORTEN = {
    "train": {"train.max_steps": "1", "train.batch_size": "2", "data.crop_size": "[32,64]", "val.limit": "1",
              "train.num_workers": "0", "train.val_every": "0", "train.ckpt_every": "1", "train.log_every": "1",
              "train.image_every": "0"},
    "eval": {"data.limit": "1"},
    "make_sceneflow_sample.py": {"height": "64", "width": "128", "train_pairs": "4", "test_pairs": "2", "workers": "1"},
}  # fmt: skip
# Paths outside the working folder that the docs use, as paths inside it.
OUTSIDE = {"/data/SceneFlow": "datasets/SceneFlow", "/data/kitti2015": "datasets/KITTI/2015"}
# What composes but does not run here, and why.
COMPOSE_ONLY = {
    "device=cuda": "a GPU command",
    "torchrun": "several processes on GPUs",
    "train.resume=true": "continues the GPU run of the block above",
    "make_generated_benchmark.py": "builds all 440 pairs of a benchmark (tests/test_benchmark_set.py rebuilds slices)",
    "stereo-app": "a server that runs until stopped (tests/test_app_browser.py starts it and drives the page)",
    "app.py": "a server that runs until stopped (tests/test_app_browser.py starts it and drives the page)",
    "left=raw/": "a raw camera pair and its calibration (tests/test_rectification.py simulates a rig and runs it)",
    "layout=sbs": "frames or a video holding both views (tests/test_infer_collections.py, tests/test_video.py)",
    "attention_study.py": "collects the study's runs into docs/attention_study.md (it would rewrite the docs)",
}


def _why_not(line: str, program: str) -> str | None:
    return next((why for key, why in COMPOSE_ONLY.items() if key in line or key == program), None)


def _shortened(program: str, args: list[str]) -> list[str]:
    kind = APPS.get(program, program)
    short = SHORTEN.get(kind, {})
    out = []
    for a in args:
        key, _, value = a.partition("=")
        value = OUTSIDE.get(value, value)
        out.append(f"{key}={short[key]}" if key in short else f"{key}={value}" if _ else a)
    given = {a.partition("=")[0].lstrip("+") for a in args}
    return out + [f"{k}={v}" for k, v in short.items() if k not in given]


@pytest.fixture(scope="module")
def workspace(sample_root, checkpoint, tmp_path_factory):
    """A working folder holding, from generated pairs, every file and dataset the documented commands
    name: Scene Flow roots, Middlebury/ETH3D/KITTI/folder layouts, image pairs, calibrations, checkpoints
    (the tiny trained one) and an original PSMNet file."""
    import shutil

    import cv2
    import numpy as np
    import torch

    from stereo.checkpoint import ours_to_original
    from stereo.data.benchmarks import build_slice
    from stereo.data.pfm import read_pfm, write_pfm
    from stereo.data.sceneflow import discover
    from tests.test_real_benchmarks import _middlebury as two_view_scenes

    work = tmp_path_factory.mktemp("docs")
    pairs = discover(sample_root, "train", "clean")[:5]  # enough to hold out validation pairs and fill a batch
    (work / "datasets").mkdir()
    (work / "datasets/SceneFlow").symlink_to(sample_root)  # gen2_train: made by a documented command
    build_slice("generated-v1", "272x480", 1, work / "datasets/generated-v1/272x480")  # its first pair
    for i, s in enumerate(pairs):
        gt = read_pfm(s.disparity)
        kitti = work / "datasets/KITTI/2015/training"
        for sub, src in (("image_2", s.left), ("image_3", s.right)):
            (kitti / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, kitti / sub / f"{i:06d}_10.png")
        for sub in ("disp_occ_0", "disp_noc_0"):
            (kitti / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(kitti / sub / f"{i:06d}_10.png"), np.round(gt * 256).astype(np.uint16))
        for root in ("pairs", f"data/scene{i % 2}", "my_pairs"):
            for sub, src in (("left", s.left), ("right", s.right)):
                (work / root / sub).mkdir(parents=True, exist_ok=True)
                shutil.copy(src, work / root / sub / f"{i:04d}.png")
        (work / "my_pairs/disparity").mkdir(exist_ok=True)
        write_pfm(work / "my_pairs/disparity" / f"{i:04d}.pfm", gt)
    # MiddEval3 and ETH3D: the two-view scenes tests/test_real_benchmarks.py evaluates
    two_view_scenes(sample_root, work / "datasets/MiddEval3/trainingQ", gt_name="disp0GT.pfm")
    two_view_scenes(sample_root, work / "datasets/ETH3D/two_view_training", gt_name="disp0GT.pfm", gray=True)
    s = pairs[0]
    for left, right in (("left.png", "right.png"), ("l.png", "r.png"), ("Adirondack/im0.png", "Adirondack/im1.png"),
                        ("kitti/image_2/000000_10.png", "kitti/image_3/000000_10.png")):  # fmt: skip
        for name, src in ((left, s.left), (right, s.right)):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, work / name)
    calib = "cam0=[100 0 64; 0 100 32; 0 0 1]\ncam1=[100 0 64; 0 100 32; 0 0 1]\ndoffs=0\nbaseline=100\n"
    (work / "calib.txt").write_text(calib + "width=128\nheight=64\n")
    (work / "Adirondack/calib.txt").write_text(calib + "width=128\nheight=64\n")
    (work / "kitti/calib").mkdir()
    p = "100 0 64 {} 0 100 32 0 0 0 1 0"
    (work / "kitti/calib/000000.txt").write_text(f"P2: {p.format(0)}\nP3: {p.format(-54)}\n")
    for ckpt in ("best.pt", "runs/ea/checkpoints/best.pt", "runs/ea_psmnet/checkpoints/best.pt"):
        (work / ckpt).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(checkpoint, work / ckpt)
    from stereo.api import untrained_model

    torch.manual_seed(0)
    psmnet = untrained_model("psmnet", device="cpu").network.state_dict()
    torch.save({"epoch": 1, "state_dict": {ours_to_original(k): v for k, v in psmnet.items()}, "train_loss": 0.0},
               work / "pretrained_sceneflow_new.tar")  # fmt: skip
    return work


RUNNABLE = []
for _doc, _line, _program, _args in COMMANDS:
    if "--help" in _args or _why_not(_line, _program) or _line in {c for _, c, _, _ in RUNNABLE}:  # once each
        continue
    RUNNABLE.append((_doc, _line, _program, _args))


@pytest.mark.slow
def test_documented_cpu_commands_run(workspace):
    """Every documented command that runs on a CPU, in the order the docs give (an export before the
    ONNX Runtime command that uses its file), shortened only by the allow-listed keys (SHORTEN)."""
    import subprocess
    import sys

    assert len(RUNNABLE) >= 25
    failures = []
    for doc, line, program, args in RUNNABLE:
        script = {"stereo-train": "train.py", "stereo-eval": "evaluate.py", "stereo-infer": "infer.py",
                  "stereo-export": "export.py"}.get(program, program)  # fmt: skip
        argv = [sys.executable, str(REPO / "scripts" / script), *_shortened(program, args)]
        proc = subprocess.run(argv, cwd=workspace, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            failures.append(f"{doc}: {line}\n  ran {' '.join(argv[1:])}\n  {proc.stderr.strip()[-600:]}")
    assert not failures, "\n".join(failures)
