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
    assert thumbnails_match(a, {"x.png": [0.1, 0.25, 0.3]}) == ["x.png"]
    assert thumbnails_match(a, {}) == ["x.png"]
