import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from stereo.data.dataset import Augmentation, StereoDataset
from stereo.data.images import read_rgb
from stereo.data.pfm import read_pfm, write_pfm
from stereo.data.sceneflow import Sample, discover


def test_full_frames(sample_root):
    samples = discover(sample_root, "test", cache=False)
    ds = StereoDataset(samples, max_disp=10)
    item = ds[0]
    assert item["left"].shape == (3, 64, 128) and item["left"].dtype == torch.float32
    assert 0 <= item["left"].min() and item["left"].max() <= 1
    gt = read_pfm(samples[0].disparity)
    np.testing.assert_array_equal(item["disparity"].numpy(), gt)
    np.testing.assert_array_equal(item["valid"].numpy(), (gt > 0) & (gt < 10))
    np.testing.assert_allclose(item["left"].permute(1, 2, 0).numpy(), read_rgb(samples[0].left))
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["left"].shape == (2, 3, 64, 128) and batch["valid"].shape == (2, 64, 128)


def test_crop_keeps_stereo_geometry(sample_root):
    samples = discover(sample_root, "train", cache=False)
    ds = StereoDataset(samples, crop_size=(32, 64), seed=1)
    for i in range(len(ds)):
        item = ds[i]
        left = item["left"].permute(1, 2, 0).numpy()
        full_left = read_rgb(samples[i].left)
        full_disp = read_pfm(samples[i].disparity)
        # Locate the crop window in the full frame: it must be the same window for image and disparity.
        res = cv2.matchTemplate(full_left, left, cv2.TM_SQDIFF)
        y, x = np.unravel_index(res.argmin(), res.shape)
        np.testing.assert_array_equal(item["disparity"].numpy(), full_disp[y : y + 32, x : x + 64])
        np.testing.assert_array_equal(
            item["right"].permute(1, 2, 0).numpy(), read_rgb(samples[i].right)[y : y + 32, x : x + 64]
        )


def test_augmentation_is_seeded_and_geometry_free(sample_root):
    samples = discover(sample_root, "train", cache=False)
    aug = Augmentation(asymmetric_prob=0.5, eraser_prob=0.5)
    a = StereoDataset(samples, crop_size=(32, 64), augment=aug, seed=3)
    b = StereoDataset(samples, crop_size=(32, 64), augment=aug, seed=3)
    for i in range(4):
        for k in ("left", "right", "disparity"):
            assert torch.equal(a[i][k], b[i][k])
    a.set_epoch(1)
    assert not torch.equal(a[0]["left"], b[0]["left"])
    a.set_epoch(0)
    plain = StereoDataset(samples, crop_size=(32, 64), seed=3)
    differs = 0
    for i in range(len(samples)):
        x, y = a[i], plain[i]
        assert torch.equal(x["disparity"], y["disparity"])  # same crop; disparity never changes
        assert 0 <= x["left"].min() and x["left"].max() <= 1 and x["right"].max() <= 1
        differs += not torch.allclose(x["left"], y["left"])
    assert differs > 0


def test_loader_workers_do_not_change_items(sample_root):
    samples = discover(sample_root, "train", cache=False)
    ds = StereoDataset(samples, crop_size=(32, 64), augment=Augmentation(), seed=5)
    one = [b["left"] for b in DataLoader(ds, batch_size=4)]
    two = [b["left"] for b in DataLoader(ds, batch_size=4, num_workers=2)]
    assert all(torch.equal(p, q) for p, q in zip(one, two, strict=True))


def test_grayscale_rgba_and_16bit_images(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), rgb[..., 0])
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([rgb, np.full((8, 12), 7, np.uint8)]))
    cv2.imwrite(str(tmp_path / "deep.png"), rgb.astype(np.uint16) * 257)
    gray = read_rgb(tmp_path / "gray.png")
    assert gray.shape == (8, 12, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(read_rgb(tmp_path / "rgba.png"), rgb[..., ::-1] / 255.0, atol=1e-7)
    np.testing.assert_allclose(read_rgb(tmp_path / "deep.png"), rgb[..., ::-1] / 255.0, atol=1e-6)


def test_bad_files_are_named(tmp_path):
    img = np.zeros((8, 12, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "l.png"), img)
    cv2.imwrite(str(tmp_path / "r.png"), np.zeros((8, 10, 3), np.uint8))
    write_pfm(tmp_path / "d.pfm", np.ones((8, 12), np.float32))
    ds = StereoDataset([Sample(tmp_path / "l.png", tmp_path / "r.png", tmp_path / "d.pfm", "x")])
    with pytest.raises(ValueError, match=r"differ in size: .*l\.png is 12x8.*r\.png is 10x8"):
        ds[0]
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = StereoDataset([Sample(tmp_path / "l.png", tmp_path / "c.png", tmp_path / "d.pfm", "x")])
    with pytest.raises(ValueError, match=r"c\.png: cannot decode"):
        ds[0]
    write_pfm(tmp_path / "d2.pfm", np.ones((4, 12), np.float32))
    ds = StereoDataset([Sample(tmp_path / "l.png", tmp_path / "l.png", tmp_path / "d2.pfm", "x")])
    with pytest.raises(ValueError, match=r"d2\.pfm is 12x4 but its image .*l\.png is 12x8"):
        ds[0]
    ds = StereoDataset([Sample(tmp_path / "l.png", tmp_path / "l.png", tmp_path / "d.pfm", "x")], crop_size=(16, 16))
    with pytest.raises(ValueError, match="crop 16x16 is larger than the frame 8x12"):
        ds[0]
    with pytest.raises(ValueError, match="at least one sample"):
        StereoDataset([])


def test_non_finite_and_out_of_range_disparity_masked(tmp_path):
    cv2.imwrite(str(tmp_path / "l.png"), np.zeros((2, 3, 3), np.uint8))
    write_pfm(tmp_path / "d.pfm", np.array([[np.nan, -1, 0], [5, 191.9, 1000]], np.float32))
    item = StereoDataset([Sample(tmp_path / "l.png", tmp_path / "l.png", tmp_path / "d.pfm", "x")])[0]
    assert item["valid"].tolist() == [[False, False, False], [True, True, False]]
    assert torch.isfinite(item["disparity"]).all()


def test_textureless_follows_the_taxonomy_definition_by_direct_scan():
    """Scharstein and Szeliski's textureless pixels: the squared horizontal gradient of the grey image
    (0-255, central differences, edges replicated) averaged over 3x3 (replicated) is below 4."""
    from stereo.metrics import textureless

    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 9, 12, generator=g, dtype=torch.float64) * 0.02 + 0.4  # nearly flat
    img[..., 6:] += torch.rand(1, 3, 9, 6, generator=g, dtype=torch.float64) * 0.3  # a textured right part
    grey = (img.mean(1)[0] * 255).numpy()
    h, w = grey.shape
    gx = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            gx[y, x] = (grey[y, min(x + 1, w - 1)] - grey[y, max(x - 1, 0)]) / 2
    want = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            win = [gx[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)] ** 2 for dy in (-1, 0, 1)
                   for dx in (-1, 0, 1)]  # fmt: skip
            want[y, x] = np.mean(win) < 4.0
    got = textureless(img)[0].numpy()
    assert (got == want).all() and want[:, :4].all() and not want[:, 8:].any()


def test_texture_regions_split_the_valid_pixels(sample_root):
    from stereo.data.sceneflow import discover

    samples = discover(sample_root, split="test", cache=False)[:2]
    every, flat, rich = (StereoDataset(samples, 32, texture=t) for t in (None, "lowtexture", "textured"))
    for i in range(2):
        a, b, c = every[i]["valid"], flat[i]["valid"], rich[i]["valid"]
        assert torch.equal(b | c, a) and not (b & c).any() and c.any()
    with pytest.raises(ValueError, match="texture must be"):
        StereoDataset(samples, 32, texture="smooth")
