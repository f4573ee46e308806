"""The generated benchmarks cannot change silently: a slice rebuilt now matches the committed manifest."""

import json

import pytest

from stereo.data.benchmarks import BENCHMARKS, manifest_path, thumbnails_match
from stereo.data.synthetic import generate_sceneflow_sample


@pytest.mark.parametrize("name", ["generated-v1", "generated-v2"])
def test_generated_slice_matches_manifest(tmp_path, name):
    spec = BENCHMARKS[name]
    manifest = json.loads(manifest_path(name).read_text())
    part = manifest["parts"]["272x480"]
    h, w, n = spec["parts"]["272x480"]
    assert part["parameters"]["test_pairs"] == n == 200 and len(part["files"]) == 6 * n
    k = spec["fingerprint_pairs"]
    got = generate_sceneflow_sample(tmp_path / "slice", height=h, width=w, train_pairs=0, test_pairs=k,
                                    seed=spec["seed"], objects=spec["objects"], progress=False,
                                    fingerprint_pairs=k, version=spec["generator_version"])  # fmt: skip
    assert set(got["thumbnails"]) == set(part["thumbnails"]) and len(got["thumbnails"]) == 6 * k
    assert thumbnails_match(part["thumbnails"], got["thumbnails"]) == []
    # On a machine like the one that made the manifest the files are bit-identical too.
    exact = [f for f in got["files"] if got["files"][f] == part["files"][f]]
    assert exact, "no file of the slice is bit-identical to the manifest"


def test_thumbnail_check_detects_a_change():
    a = {"x.png": [0.1, 0.2, 0.3]}
    assert thumbnails_match(a, {"x.png": [0.1, 0.2, 0.31]}) == []
    assert thumbnails_match({"x.png": [0.52]}, {"x.png": [0.54]}) == []  # 0.020000000000000018 in floats
    assert thumbnails_match(a, {"x.png": [0.1, 0.25, 0.3]}) == ["x.png"]
    assert thumbnails_match(a, {}) == ["x.png"]


def test_verify_tells_content_changes_from_rounding():
    """Ground truth must match bit for bit and fingerprints within rounding; images whose bytes differ
    (another library build) are only counted."""
    import copy

    from stereo.data.benchmarks import verify

    ref = json.loads(manifest_path("generated-v1").read_text())
    assert verify("generated-v1", ref) == ([], [])
    part = ref["parts"]["272x480"]
    image = next(f for f in part["files"] if f.endswith(".png"))
    pfm = next(f for f in part["files"] if f.endswith(".pfm"))

    rounded = copy.deepcopy(ref)
    rounded["parts"]["272x480"]["files"][image] = "0" * 64
    problems, notes = verify("generated-v1", rounded)
    assert problems == [] and notes == [
        f"272x480: {len(part['files']) * 2 // 3 - 1} of {len(part['files']) * 2 // 3} images bit-identical"
    ]

    for change in ("pfm", "missing", "thumbnail", "parameters"):
        bad = copy.deepcopy(ref)
        p = bad["parts"]["272x480"]
        if change == "pfm":
            p["files"][pfm] = "0" * 64
        elif change == "missing":
            p["files"][image] = "missing"
        elif change == "thumbnail":
            key = next(iter(p["thumbnails"]))
            p["thumbnails"][key] = [v + 0.1 for v in p["thumbnails"][key]]
        else:
            p["parameters"]["seed"] += 1
        problems, _ = verify("generated-v1", bad)
        assert len(problems) == 1 and problems[0].startswith("272x480:"), (change, problems)
