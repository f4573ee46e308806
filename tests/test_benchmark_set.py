"""The generated benchmarks cannot change silently: every file of a built copy is checked by value
against the committed fingerprints, a slice rebuilt now (also with the vector paths limited) matches them."""

import json
import os
import platform

import numpy as np
import pytest

from stereo.data.benchmarks import (
    BENCHMARKS,
    GT_TOLERANCE_PX,
    IMAGE_BLOCK_LIMIT,
    IMAGE_BLOCKS,
    IMAGE_TOLERANCE,
    compare_fingerprints,
    fingerprint,
    fingerprints_of,
    load_fingerprints,
    manifest_path,
    verify,
)


def _slice(tmp_path, name, env=None):
    """The first pairs of ``name``'s first part, generated in a subprocess under ``env`` (vector paths limited),
    and their fingerprints against the committed ones."""
    import subprocess
    import sys

    spec = BENCHMARKS[name]
    part = next(iter(spec["parts"]))
    h, w, _ = spec["parts"][part]
    k = spec["fingerprint_pairs"]
    code = (
        "import sys; from stereo.data.synthetic import generate_sceneflow_sample as g; "
        f"g(sys.argv[1], height={h}, width={w}, train_pairs=0, test_pairs={k}, seed={spec['seed']}, "
        f"objects={tuple(spec['objects'])}, progress=False, version={spec['generator_version']})"
    )
    out = tmp_path / "slice"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env={**os.environ, **(env or {})}, timeout=600)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.suffix in (".png", ".pfm"))
    assert len(files) == 6 * k
    expected = load_fingerprints(name)[part]
    return compare_fingerprints({f: expected[f] for f in files}, fingerprints_of(out, files))


@pytest.mark.parametrize("name", ["generated-v1", "generated-v2", "generated-v3"])
def test_generated_slice_matches_manifest(tmp_path, name):
    manifest = json.loads(manifest_path(name).read_text())
    first = next(iter(BENCHMARKS[name]["parts"]))
    part = manifest["parts"][first]
    assert part["parameters"]["test_pairs"] == 200 and len(part["files"]) == 6 * 200
    assert set(load_fingerprints(name)[first]) == set(part["files"])  # every file has its fingerprint
    assert _slice(tmp_path, name) == {"missing": [], "ground truth": [], "images": []}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["generated-v1", "generated-v2", "generated-v3"])
def test_generation_holds_with_the_vector_paths_limited(tmp_path, name):
    """What another CPU would run: NumPy without its AVX2/AVX-512 loops, OpenCV without AVX/AVX2/AVX-512,
    PyTorch's default kernels, OpenBLAS's Haswell kernel. The slice stays within the tolerances."""
    env = {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
           "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512-CLX,AVX512-CNL,AVX512-ICL,AVX2,FMA3,AVX",
           "ATEN_CPU_CAPABILITY": "default", "OPENBLAS_CORETYPE": "Haswell"}  # fmt: skip
    if platform.machine() not in ("x86_64", "AMD64"):
        env = {"ATEN_CPU_CAPABILITY": "default"}
    assert _slice(tmp_path, name, env) == {"missing": [], "ground truth": [], "images": []}


def _built_from_committed(name):
    """A build that matches the committed manifest and fingerprints exactly."""
    ref = json.loads(manifest_path(name).read_text())
    prints = load_fingerprints(name)
    for part, m in ref["parts"].items():
        m["fingerprints"] = {f: v.copy() for f, v in prints[part].items()}
    return ref


def test_verify_checks_every_file_by_value(tmp_path, sample_root):
    """Every file counts: ground truth beyond 1e-3 px, any image beyond the tolerance, a missing file or
    other parameters fail; bytes that differ within the tolerances are a note."""
    import copy

    built = _built_from_committed("generated-v1")
    assert verify("generated-v1", built) == ([], [])
    part = built["parts"]["272x480"]
    images = [f for f in part["files"] if f.endswith(".png")]
    pfm = next(f for f in part["files"] if f.endswith(".pfm"))

    rounded = copy.deepcopy(built)
    r = rounded["parts"]["272x480"]
    r["files"][images[-1]] = "0" * 64  # other bytes, same content within tolerance
    r["fingerprints"][images[-1]][3, 4] += IMAGE_BLOCK_LIMIT - 1  # one flipped edge: a block far off
    r["fingerprints"][images[-1]][5, 6 : 6 + IMAGE_BLOCKS - 2] += IMAGE_TOLERANCE + 1  # 3 blocks beyond in all
    r["fingerprints"][pfm][0, 0] += GT_TOLERANCE_PX / 2
    problems, notes = verify("generated-v1", rounded)
    assert problems == [] and notes == [
        f"272x480: {len(part['files']) - 1} of {len(part['files'])} files bit-identical"
    ]

    for change in ("gt", "image", "last image", "one block", "missing", "parameters"):
        bad = copy.deepcopy(built)
        p = bad["parts"]["272x480"]
        if change == "gt":
            p["fingerprints"][pfm][5, 7] += 2 * GT_TOLERANCE_PX
        elif change in ("image", "last image"):  # not only the first pairs: any of the 800 images
            p["fingerprints"][images[0 if change == "image" else -1]][10, 20:22] -= IMAGE_TOLERANCE + 2
            p["fingerprints"][images[0 if change == "image" else -1]][11, 20:22] -= IMAGE_TOLERANCE + 2
        elif change == "one block":
            p["fingerprints"][images[7]][2, 2] += IMAGE_BLOCK_LIMIT + 2
        elif change == "missing":
            del p["fingerprints"][images[5]]
        else:
            p["parameters"]["seed"] += 1
        problems, _ = verify("generated-v1", bad)
        assert len(problems) == 1 and problems[0].startswith("272x480:"), (change, problems)


def test_generated_v3_records_its_photographs_and_keeps_them_out_of_training():
    """generated-v3 shows only the held-out photographs; its manifest names them and the training ones it never
    shows, and a build from other photographs fails verification."""
    import copy

    from stereo.data.synthetic import PHOTO_SETS

    built = _built_from_committed("generated-v3")
    record = built["photographs"]
    assert record["set"] == "benchmark" and len(record["files"]) == len(PHOTO_SETS["benchmark"])
    assert not set(record["files"]) & set(record["never_used"]["train"])
    assert verify("generated-v3", built)[0] == []
    other = copy.deepcopy(built)
    other["photographs"]["files"] = record["never_used"]["train"]
    assert verify("generated-v3", other)[0] == ["the photographs it draws from differ"]


def test_one_altered_patch_fails_its_image(sample_root, tmp_path):
    """A 16x16 patch painted over a generated image, wherever it falls on the 8x8 grid, takes the image
    beyond the tolerance (4 whole blocks when aligned, 9 in part otherwise); the untouched file matches."""
    import shutil

    import cv2

    src = sorted((sample_root / "FlyingThings3D/frames_finalpass/TEST").rglob("left/*.png"))[0]
    img = cv2.imread(str(src))
    ref = {"x.png": fingerprint(src)}
    for y, x in ((8, 16), (13, 37), (40, 101)):
        edited = img.copy()
        patch = edited[y : y + 16, x : x + 16]
        patch[:] = 255 if patch.mean() < 128 else 0  # a local edit: paint the patch
        cv2.imwrite(str(tmp_path / "x.png"), edited)
        assert compare_fingerprints(ref, fingerprints_of(tmp_path, ["x.png"]))["images"] == ["x.png"], (y, x)
    shutil.copy(src, tmp_path / "x.png")
    assert compare_fingerprints(ref, fingerprints_of(tmp_path, ["x.png"]))["images"] == []


def test_fingerprint_is_the_block_mean():
    rng = np.random.default_rng(0)
    a = rng.random((20, 13)) * 96
    from stereo.data.pfm import write_pfm

    with __import__("tempfile").TemporaryDirectory() as tmp:
        write_pfm(f"{tmp}/a.pfm", a.astype(np.float32))
        got = fingerprint(f"{tmp}/a.pfm")
    a32 = a.astype(np.float32).astype(np.float64)
    assert got.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            np.testing.assert_allclose(got[i, j], a32[8 * i : 8 * i + 8, 8 * j : 8 * j + 8].mean(), rtol=1e-12)
