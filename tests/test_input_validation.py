"""Inputs validated before use: calibrations, non-finite config values, image headers (size, frames,
EXIF orientation)."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stereo.calib import calibration_from
from stereo.config import InferAppConfig, check_config, load_config
from stereo.data.images import read_rgb
from stereo.errors import ConfigError, DataError


def _calib(tmp_path, text, name="calib.txt"):
    p = tmp_path / name
    p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return str(p)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("cam0=[0 0 10; 0 0 8; 0 0 1]\nbaseline=100\n", r"focal=0\.0 must be a finite number > 0"),
        ("cam0=[500 0 10; 0 500 8; 0 0 1]\nbaseline=-100\n", r"baseline=-100\.0 must be a finite number > 0"),
        ("cam0=[500 0 10; 0 500 8; 0 0 1]\nbaseline=100\ndoffs=nan\n", r"doffs=nan must be a finite number"),
        ("cam0=[500 0 10; 0 500 8; 0 0 1]\nbaseline=1oo\n", r"baseline='1oo' is not a number"),
        ("cam0=[500 0 x; 0 500 8; 0 0 1]\nbaseline=100\n", r"cam0='x' is not a number"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", r"not a text calibration file"),
    ],
)
def test_bad_calibration_files_are_one_line_naming_file_and_key(tmp_path, text, match):
    path = _calib(tmp_path, text)
    with pytest.raises(DataError, match=match) as e:
        calibration_from(path, None, None, None, None, None)
    assert "calib.txt" in str(e.value)


def test_explicit_values_are_checked_after_merging(tmp_path):
    good = _calib(tmp_path, "cam0=[500 0 10; 0 500 8; 0 0 1]\nbaseline=100\n")
    assert calibration_from(good, None, None, None, None, None).f == 500
    with pytest.raises(DataError, match=r"cx=inf must be a finite number"):
        calibration_from(good, None, None, float("inf"), None, None)
    with pytest.raises(DataError, match=r"doffs=nan must be a finite number"):
        calibration_from(None, 100.0, 0.5, None, None, float("nan"))


@pytest.mark.parametrize("override", ["scale=nan", "focal_px=inf", "max_depth=-inf", "doffs=nan"])
def test_non_finite_config_values_are_refused(override):
    cfg = load_config("infer", ["left=a.png", "right=b.png", override])
    with pytest.raises(ConfigError, match=rf"{override.split('=')[0]}=.*must be a finite number"):
        check_config(cfg, InferAppConfig)


def _png_with_header(path, width, height):
    """A valid 1x1 PNG whose IHDR claims ``width`` x ``height`` (decoding it would allocate that much)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x00")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20000, 100000])
def test_huge_image_header_is_refused_before_decoding(tmp_path, side):
    _png_with_header(tmp_path / "big.png", side, side)
    with pytest.raises(DataError, match=r"big\.png: .*larger than 100,000,000 pixels"):
        read_rgb(tmp_path / "big.png")


def test_multi_frame_file_is_refused(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match=r"anim\.gif: holds 2 frames"):
        read_rgb(tmp_path / "anim.gif")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_what_a_viewer_shows(tmp_path, orientation):
    from PIL import ImageOps

    pixels = np.random.default_rng(orientation).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_rgb(tmp_path / "o.png")
    assert got.shape == shown.shape
    np.testing.assert_array_equal(np.round(got * 255).astype(np.uint8), shown)


def test_scale_that_shrinks_below_the_network_minimum_is_refused_before_writing(checkpoint, tmp_path):
    from stereo.infer import infer

    for view in ("l", "r"):
        Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(tmp_path / f"{view}.png")
    cfg = load_config("infer", [f"checkpoint={checkpoint}", f"left={tmp_path / 'l.png'}",
                                f"right={tmp_path / 'r.png'}", "scale=1e-9", "device=cpu"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"scale=1e-09 makes .*l\.png \(96x64\) 1x1 px; the network needs at least"):
        infer(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unavailable_devices_and_precisions_are_config_errors(tmp_path):
    import torch

    from stereo.device import autocast, resolve_device
    from stereo.infer import infer

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda: CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="precision=fp16 needs CUDA"):
        autocast(torch.device("cpu"), "fp16")
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(tmp_path / "a.png")
    # every setting the exported graph cannot honour is refused, not silently ignored
    for extra in ("checkpoint=some.pt", "early_exit=head", "refinement=false", "regression=local", "precision=bf16",
                  "exit_head=2", "memory_budget_gb=2.0", "fold_batchnorm=false"):  # fmt: skip
        cfg = load_config("infer", [f"left={tmp_path / 'a.png'}", f"right={tmp_path / 'a.png'}",
                                    "backend=onnxruntime", "onnx=x.onnx", extra])  # fmt: skip
        with pytest.raises(ConfigError, match=rf"{extra}: not available with backend=onnxruntime"):
            infer(cfg, tmp_path / "out")


@pytest.mark.parametrize(
    ("flags", "native"),
    [("fpu sse2 avx2 avx512f avx512bw", False), ("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True)]
    + [("fp asimd sve", False), ("fp asimd sve bf16", True)],  # Arm: "Features"
)
def test_emulated_bf16_on_a_cpu_is_a_warning_naming_the_fix(tmp_path, monkeypatch, caplog, flags, native):
    import torch

    from stereo import device as dev

    cpuinfo = tmp_path / "cpuinfo"
    key = "Features" if "asimd" in flags else "flags"
    cpuinfo.write_text(f"processor\t: 0\n{key}\t\t: {flags}\n\nprocessor\t: 1\n{key}\t\t: {flags}\n")
    assert dev.cpu_has_native_bf16(cpuinfo) is native
    assert dev.cpu_has_native_bf16(tmp_path / "absent") is None  # not Linux: unknown, no warning
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: native)
    caplog.set_level("WARNING", logger="stereo.device")
    dev.check_precision(torch.device("cpu"), "fp32")
    assert not caplog.records
    dev.check_precision(torch.device("cpu"), "bf16")
    assert ("emulated and far slower than fp32; use precision=fp32" in caplog.text) is not native
    with pytest.raises(ConfigError, match="precision=fp16 needs CUDA"):
        dev.check_precision(torch.device("cpu"), "fp16")
    # auto: bf16 only where it is native, never the emulated path; said once, as what it chose
    caplog.clear()
    caplog.set_level("INFO", logger="stereo.device")
    monkeypatch.setattr(dev, "_SAID", set())  # a fresh process: nothing said yet
    chosen, cpu = "bf16" if native else "fp32", torch.device("cpu")
    assert dev.check_precision(cpu, "auto") == chosen == dev.resolve_precision(cpu, "auto")
    dev.check_precision(torch.device("cpu"), "auto")
    assert [r.getMessage() for r in caplog.records if "precision=auto" in r.getMessage()] == [
        f"precision=auto: {chosen} ({'native on this device' if native else 'no native bf16 on this cpu'})"
    ]
    assert "emulated" not in caplog.text
    with dev.autocast(torch.device("cpu"), "auto"):
        assert torch.is_autocast_enabled("cpu") is native


def test_sgbm_refuses_images_narrower_than_its_range_and_even_blocks():
    import torch

    from stereo.config import EvalAppConfig
    from stereo.sgbm import SGBMStereo

    m = SGBMStereo(96)
    assert m(torch.rand(1, 3, 32, 128), torch.rand(1, 3, 32, 128)).shape == (1, 32, 128)
    with pytest.raises(DataError, match=r"64 px wide image with a search range of 96 px.*num_disparities below 48"):
        m(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64))
    with pytest.raises(ConfigError, match=r"sgbm.block_size=4: expected an odd number"):
        check_config(load_config("eval", ["sgbm.block_size=4"]), EvalAppConfig)


@pytest.mark.slow
def test_generator_scripts_answer_help_and_validate_their_keys(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    def run(script, *args):
        return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)  # fmt: skip

    for script in ("make_sceneflow_sample.py", "make_generated_benchmark.py"):
        shown = run(script, "--help")
        assert shown.returncode == 0 and "Keys (key=value" in shown.stdout and "workers=0" in shown.stdout
    for args, needle in [(("height=10",), "height=10: must be >= 32"),
                         (("version=11",), "version=11: expected 2, 3, 4, 5, 6, 7, 8, 9 or 10"),
                         (("version=5",), "version=5 crops its photographs, never enlarging them: 540x960"),
                         (("version=8", "height=272", "width=480"),
                          "version=8 crops its photographs, never enlarging them: 272x480 (2 x 2 photograph pixels a "
                          "pixel: 544x960) fits none of them"),
                         (("objects_min=9", "objects_max=3"), "objects must be (min, max)"),
                         (("hieght=300",), "hieght")]:  # fmt: skip
        proc = run("make_sceneflow_sample.py", f"out={tmp_path / 'x'}", *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and needle in proc.stderr, proc.stderr
    proc = run("make_generated_benchmark.py", "name=generated-v9", f"out={tmp_path / 'y'}")
    assert proc.returncode == 1 and "no generated benchmark named 'generated-v9'" in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_generated_benchmark_is_built_in_its_own_folder_by_default(monkeypatch):
    """make_generated_benchmark name=generated-v2 without out= builds datasets/generated-v2 (it used to build
    into datasets/generated-v1 whatever the name)."""
    from stereo.errors import DataError
    from stereo.tools import make_generated_benchmark as tool

    asked = []

    def build(name, out, workers):
        asked.append((name, out))
        raise DataError("stop here")

    monkeypatch.setattr(tool, "build", build)
    for args, out in ((["name=generated-v2"], "datasets/generated-v2"), ([], "datasets/generated-v1"),
                      (["name=generated-v3", "out=elsewhere"], "elsewhere")):  # fmt: skip
        with pytest.raises(SystemExit, match="stop here"):
            tool.main(args)
        assert asked.pop()[1] == out


@pytest.mark.slow
def test_unusable_run_folder_is_one_line_before_hydra_starts(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "afile").write_text("x")
    run_dir = tmp_path / "afile" / "r"
    args = [sys.executable, str(REPO / "scripts/evaluate.py"), "method=sgbm", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "hydra.run.dir=" in proc.stderr and "afile is not a folder" in proc.stderr
