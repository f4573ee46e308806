"""The Python API: stereo.load_model().predict() on paths, arrays, PIL images and tensors; the same
numbers as stereo-infer; a confidence that tracks the error; torch.hub entries; clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

import stereo
from stereo.calib import Calibration
from stereo.config import load_config
from stereo.data.pfm import read_pfm
from stereo.errors import ConfigError, DataError, StereoError
from tests.conftest import REPO


@pytest.fixture(scope="module")
def model():
    return stereo.load_model(device="cpu")  # the shipped weights


@pytest.fixture(scope="module")
def pair(sample_root):
    left = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[0]
    right = left.parent.parent / "right" / left.name
    gt = read_pfm(str(left).replace("frames_cleanpass", "disparity").replace(".png", ".pfm"))
    return left, right, gt


def test_every_input_kind_gives_the_same_disparity(model, pair):
    left, right, _ = pair
    ref = model.predict(left, right)
    assert ref.disparity.shape == ref.confidence.shape == (64, 128) and ref.disparity.dtype == np.float32
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in (left, right)]
    for got in (model.predict(str(left), str(right)), model.predict(*arrays),
                model.predict(*(Image.open(p) for p in (left, right))),
                model.predict(*(a.astype(np.float32) / 255 for a in arrays))):  # fmt: skip
        # Up to rounding: float inputs differ from converted uint8 in the last bit, and the shipped
        # refinement's photometric inputs carry that into ~1e-4 px.
        np.testing.assert_allclose(got.disparity, ref.disparity, atol=5e-4)
        np.testing.assert_allclose(got.confidence, ref.confidence, atol=1e-5)
    grey = model.predict(arrays[0][..., 0], arrays[1][..., 0])  # grey arrays are replicated to RGB
    assert grey.disparity.shape == (64, 128)
    tensors = [torch.from_numpy(a.transpose(2, 0, 1).copy()).float() / 255 for a in arrays]
    one = model.predict(*tensors)
    assert isinstance(one.disparity, torch.Tensor) and one.disparity.shape == (64, 128)
    np.testing.assert_allclose(one.disparity.numpy(), ref.disparity, atol=5e-4)
    batch = model.predict(torch.stack([tensors[0]] * 2), torch.stack([tensors[1]] * 2))
    assert batch.disparity.shape == (2, 64, 128)
    # A batch of two runs other convolution kernels: rounding, which the refinement's window around the most
    # likely disparity can carry to ~1e-3 px where two disparities are equally likely.
    np.testing.assert_allclose(batch.disparity[1].numpy(), ref.disparity, atol=2e-3)
    assert torch.equal(model(*(t[None] for t in tensors)), one.disparity[None])


def test_predict_equals_stereo_infer(model, pair, tmp_path):
    from stereo.infer import infer

    left, right, _ = pair
    cfg = load_config("infer", [f"left={left}", f"right={right}", "device=cpu", "confidence=true", "scale=0.5"])
    infer(cfg, tmp_path)
    got = model.predict(left, right, scale=0.5)
    np.testing.assert_allclose(read_pfm(tmp_path / f"{left.stem}.pfm"), got.disparity, atol=1e-4)
    np.testing.assert_allclose(read_pfm(tmp_path / f"{left.stem}_confidence.pfm"), got.confidence, atol=1e-6)
    png = np.asarray(Image.open(tmp_path / f"{left.stem}_confidence.png"))
    assert png.dtype == np.uint8 and np.abs(png / 255 - got.confidence).max() <= 0.5 / 255 + 1e-6


def test_confidence_is_lower_where_the_error_is_higher(model, tmp_path):
    from stereo.data.benchmarks import build_slice
    from stereo.data.sceneflow import discover

    root = build_slice("generated-v1", "272x480", 2, tmp_path / "slice")
    conf, err = [], []
    for s in discover(root, "test", "clean", cache=False):
        p = model.predict(s.left, s.right)
        gt = read_pfm(s.disparity)
        conf.append(p.confidence.ravel())
        err.append(np.abs(p.disparity - gt).ravel())
    conf, err = np.concatenate(conf), np.concatenate(err)
    assert conf.min() >= 0 and conf.max() <= 1
    rank = lambda x: np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)  # noqa: E731
    spearman = np.corrcoef(rank(conf), rank(err))[0, 1]
    assert spearman < -0.2, spearman
    # The most confident half is far more accurate than the least confident half.
    order = np.argsort(-conf)
    half = len(order) // 2
    assert err[order[:half]].mean() < 0.5 * err[order[half:]].mean()


def test_depth_and_point_cloud_helpers(model, pair):
    left, right, _ = pair
    p = model.predict(left, right)
    cal = Calibration(f=100.0, cx=63.5, cy=31.5, baseline=0.5)
    depth = p.depth(cal)
    pos = p.disparity > 0
    np.testing.assert_allclose(depth[pos], 50.0 / p.disparity[pos], rtol=1e-5)
    pts, colours = p.point_cloud(cal)
    fewer, _ = p.point_cloud(cal, min_confidence=float(np.median(p.confidence)))
    assert len(pts) == pos.sum() and 0 < len(fewer) < len(pts) and colours.dtype == np.uint8


def _z(*shape, dtype=np.uint8):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize(
    ("left", "right", "match"),
    [
        (_z(32, 64, 3), _z(32, 48, 3), "differ in size: left is 64x32, right is 48x32"),
        (np.full((32, 64, 3), 200.0), np.full((32, 64, 3), 200.0), r"left: float images must hold .* in \[0, 1\]"),
        (_z(32, 64, 3, dtype=np.int16), _z(32, 64, 3, dtype=np.int16), "left: unsupported dtype int16"),
        (_z(32, 64, 2), _z(32, 64, 2), r"left: expected an \(H, W\) grey"),
        (_z(0, 64, 3), _z(0, 64, 3), "left: empty image"),
        (_z(32, 64, 3), torch.zeros(3, 32, 64), "both be tensors"),
        (torch.zeros(3, 32, 64, dtype=torch.int16), torch.zeros(3, 32, 64), "left: expected a float tensor"),
        # tensors get the checks arrays get: range, NaN, size
        (torch.full((3, 32, 64), 200.0), torch.full((3, 32, 64), 200.0), r"left: float images .* got 200\.\.200"),
        (torch.full((3, 32, 64), -0.5), torch.zeros(3, 32, 64), r"left: float images .* \[0, 1\], got -0\.5"),
        (
            torch.zeros(3, 32, 64).index_fill_(2, torch.tensor([5]), float("nan")),
            torch.zeros(3, 32, 64),
            "left: 96 pixel value.s. are NaN or infinite",
        ),
        (
            np.full((32, 64, 3), np.nan, np.float32),
            _z(32, 64, 3, dtype=np.float32),
            "left: 6144 pixel value.s. are NaN",
        ),
        (_z(1, 1, 3), _z(1, 1, 3), r"left \(1x1\) is too small: the network needs at least 16 px a side"),
        (_z(1, 128, 3), _z(1, 128, 3), r"left \(128x1\) is too small"),
        (torch.zeros(3, 64, 1), torch.zeros(3, 64, 1), r"left \(1x64\) is too small"),
        (42, 42, "left: expected a file path, numpy array, PIL image or tensor, got int"),
    ],
)
def test_bad_input_is_one_clear_error(model, left, right, match):
    with pytest.raises(StereoError, match=match):
        model.predict(left, right)


def test_bad_paths_and_settings(model, tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"x\.png: cannot decode"):
        model.predict(tmp_path / "x.png", tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        model.predict(tmp_path / "nope.png", tmp_path / "nope.png")
    img = np.zeros((32, 64, 3), np.uint8)
    scales = ((2, r"scale=2: must be a finite number in \(0, 1\]"), ("0.5", "scale='0.5': expected a number"),
              (float("nan"), "scale=nan"), (0.1, r"makes left \(64x32\) 6x3 px.*use scale >= 0.5"))  # fmt: skip
    for scale, match in scales:
        with pytest.raises(ConfigError, match=match):
            model.predict(img, img, scale=scale)
    for device, match in ((None, "device=None: expected auto, cpu, cuda, cuda:N or mps"),
                          ("gpu", "device='gpu': expected auto, cpu, cuda, cuda:N or mps$")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            stereo.load_model(device=device)
    with pytest.raises(ConfigError, match="unknown runtime setting.*memory_budget"):
        stereo.load_model(device="cpu", memory_budget=4)


def test_torch_hub_entries(pair):
    left, right, _ = pair
    light = torch.hub.load(str(REPO), "ea_psmnet_light", source="local", device="cpu")
    assert isinstance(light, stereo.StereoModel) and light.max_disp == 128
    assert light.predict(left, right).disparity.shape == (64, 128)
    for name, rng_ in (("psmnet", 192), ("ea_psmnet", 192)):
        untrained = torch.hub.load(str(REPO), name, source="local", device="cpu")
        assert untrained.max_disp == rng_ and untrained.checkpoint is None
    with pytest.raises(ConfigError, match="no pretrained weights ship for psmnet"):
        torch.hub.load(str(REPO), "psmnet", source="local", pretrained=True)
    from stereo.weights import shipped_checkpoint

    own = torch.hub.load(str(REPO), "ea_psmnet_light", source="local", device="cpu", checkpoint=shipped_checkpoint())
    assert np.array_equal(own.predict(left, right).disparity, light.predict(left, right).disparity)
    with pytest.raises(ConfigError, match="holds a ea_psmnet_light network, not psmnet"):
        torch.hub.load(str(REPO), "psmnet", source="local", device="cpu", checkpoint=shipped_checkpoint())


def test_pil_modes_keep_their_values(model):
    """Every PIL mode arrives with its values: F and I are not cut to 0/1 or 0..255 by a conversion."""
    rng = np.random.default_rng(0)
    grey = rng.random((32, 64)).astype(np.float32)
    as_f = stereo.api.as_image(Image.fromarray(grey, mode="F"), "left")
    np.testing.assert_array_equal(as_f[..., 0], grey)
    with pytest.raises(DataError, match=r"left: float images must hold values in \[0, 1\], got 0\.\.255"):
        stereo.api.as_image(Image.fromarray(np.linspace(0, 255, 2048, dtype=np.float32).reshape(32, 64)), "left")
    grey16 = rng.integers(0, 65536, (32, 64)).astype(np.uint16)
    for pil in (Image.fromarray(grey16), Image.fromarray(grey16.astype(np.int32), mode="I")):
        np.testing.assert_allclose(stereo.api.as_image(pil, "left")[..., 0], grey16 / 65535, rtol=0, atol=1e-7)
    rgb = rng.integers(0, 256, (32, 64, 3)).astype(np.uint8)
    palette = Image.fromarray(rgb).quantize(64)
    np.testing.assert_array_equal(
        stereo.api.as_image(palette, "left"), np.asarray(palette.convert("RGB")).astype(np.float32) / 255
    )


def test_prediction_checks_its_arguments(model, pair):
    left, right, _ = pair
    pred = model.predict(left, right)
    cal = Calibration(f=100.0, cx=64.0, cy=32.0, baseline=0.1)
    for kw, match in (({"min_confidence": float("nan")}, "min_confidence=nan"),
                      ({"min_confidence": 1.5}, r"min_confidence=1.5: must be a finite number in \[0, 1\]"),
                      ({"max_depth": 0}, r"max_depth=0: must be a finite number in \(0, inf\]"),
                      ({"max_depth": -3.0}, "max_depth=-3.0"), ({"max_depth": "far"}, "max_depth='far'")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            pred.point_cloud(cal, **kw)
    with pytest.raises(ConfigError, match="calibration: expected a stereo.calib.Calibration, got dict"):
        pred.depth({"f": 100})
    for bad, match in (({"f": 0.0}, "f=0.0"), ({"baseline": float("nan")}, "baseline=nan"),
                       ({"baseline": -1.0}, "baseline=-1.0"), ({"doffs": float("inf")}, "doffs=inf")):  # fmt: skip
        bad_cal = Calibration(**{"f": 100.0, "cx": 64.0, "cy": 32.0, "baseline": 0.1, **bad})
        for use in (pred.depth, pred.point_cloud):
            with pytest.raises(ConfigError, match=f"calibration.{match}"):
                use(bad_cal)


def test_tensors_stay_on_their_device(device, pair):
    """Tensor input on any device: the model runs there and the result comes back there, with the head
    that answered."""
    model = stereo.load_model(device=device)
    left, right, _ = pair
    lt = torch.from_numpy(np.asarray(Image.open(left).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    rt = torch.from_numpy(np.asarray(Image.open(right).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    out = model.predict(lt.to(device), rt.to(device))
    assert out.disparity.device.type == device and out.confidence.device.type == device
    assert out.disparity.shape == lt.shape[1:] and torch.isfinite(out.disparity).all()
    assert out.heads == [model.network.hourglasses]


def test_docstring_examples_run():
    import doctest

    import stereo.api

    result = doctest.testmod(stereo.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0


def test_docs_name_every_runtime_setting_of_load_model():
    """docs/api.md lists load_model's runtime keys; the list is checked against the config schema."""
    import dataclasses
    import re

    from stereo.config import RuntimeConfig

    keys = {f.name for f in dataclasses.fields(RuntimeConfig)} - {"device", "precision"}  # own arguments
    text = (REPO / "docs/api.md").read_text()
    section = text[text.index("## `stereo.load_model(") : text.index("## `StereoModel.predict(")]
    assert keys <= set(re.findall(r"`([a-z_0-9]+)`", section)), keys - set(re.findall(r"`([a-z_0-9]+)`", section))


def test_memory_budget_covers_the_whole_prediction(model):
    """An 8000x12000 pair grew past 14 GB under the default 8 GB budget: bands of rows bound only the
    3-D part. Now the estimate covers the full-resolution part too, and the pair is refused before any
    work, with a scale that fits; what fits runs, and a larger budget lets it through the check."""
    big = torch.zeros(3, 8000, 12000, dtype=torch.uint8)  # 288 MB each; refused before any float copy
    match = r"needs about \d+\.\d GB, above memory_budget_gb=8.*use scale=0\.\d+ or less"
    with pytest.raises(ConfigError, match=match) as e:
        model.predict(big, big)
    assert float(str(e.value).split("needs about ")[1].split()[0]) > 14  # more than such a pair was seen to take
    fits = float(str(e.value).split("use scale=")[1].split()[0])
    need = model.network.peak_bytes(1, round(8000 * fits), round(12000 * fits))
    assert 0.9 * 8 * 2**30 <= need <= 8 * 2**30  # the suggested scale fits, and is not needlessly small
