"""train.cache_frozen: the frozen network's answers computed once per pair, cropped with their pair, reused
on resume and recomputed when the network changes; the stage alone learns from them."""

import numpy as np
import pytest
import torch

from stereo.data.dataset import StereoDataset
from stereo.data.disparity import read_disparity
from stereo.data.images import read_rgb, to_tensor
from stereo.errors import ConfigError
from tests.conftest import make_tiny_cfg

STAGE_ONLY = ["model.subpixel=match", "model.refine=modes", "data.augment.enabled=false"]
FROZEN = ["feature_extraction", "aggregation", "refinement"]


def _cfg(root, checkpoint, *over, **train):
    return make_tiny_cfg(root, *STAGE_ONLY, *over, **{"init_from": str(checkpoint), "freeze": FROZEN,
                                                      "cache_frozen": True, **train})  # fmt: skip


def test_a_prior_is_cropped_with_its_pair(sample_root, tmp_path):
    from stereo.data.sceneflow import discover

    samples = discover(sample_root, "train", "clean", cache=False)[:3]
    priors = []
    for i, s in enumerate(samples):  # the ground truth itself as the prior: the crops must agree
        np.save(tmp_path / f"{i}.npy", read_disparity(s.disparity))
        priors.append(tmp_path / f"{i}.npy")
    data = StereoDataset(samples, 32, crop_size=[32, 48], priors=priors, seed=3)
    for i in range(3):
        item = data[i]
        finite = item["valid"]
        assert item["prior"].shape == (32, 48) and finite.any()
        assert torch.equal(item["prior"][finite], item["disparity"][finite])
    np.save(priors[1], np.zeros((5, 5), np.float32))
    with pytest.raises(Exception, match="1.npy is 5x5"):
        data[1]


def test_cached_answers_are_the_networks_own_and_reused_until_it_changes(sample_root, checkpoint, tmp_path):
    from stereo.models import run
    from stereo.train import Trainer

    trainer = Trainer(_cfg(sample_root, checkpoint, max_steps=2, val_every=0), tmp_path / "run")
    summary = trainer.fit()
    assert summary.step == 2
    folder = tmp_path / "run" / "frozen_answers"
    files = sorted(folder.glob("*.npy"))
    assert len(files) == len(trainer.dataset.samples)
    model, s = trainer.model, trainer.dataset.samples[5]
    stage, model.subpixel = model.subpixel, None
    with torch.no_grad():
        own = run(model, to_tensor(read_rgb(s.left))[None], to_tensor(read_rgb(s.right))[None]).disparity[0]
    model.subpixel = stage
    assert np.allclose(np.load(files[5]), own.numpy(), atol=1e-5)
    # Only the stage moved; a resumed run reuses the answers as they are.
    start = torch.load(checkpoint, weights_only=False)["model"]
    state = trainer.model.state_dict()
    moved = {k for k, v in start.items() if not torch.equal(state[k].cpu(), v)}
    assert not moved and any(not torch.equal(v, torch.zeros_like(v)) for k, v in state.items() if "subpixel.out" in k)
    stamps = [f.stat().st_mtime_ns for f in files]
    Trainer(_cfg(sample_root, checkpoint, max_steps=3, val_every=0, resume=True), tmp_path / "run").fit()
    assert [f.stat().st_mtime_ns for f in files] == stamps
    # Another network (here: another precision of the same one) computes them again.
    other = _cfg(sample_root, checkpoint, "precision=bf16", max_steps=4, val_every=0, resume=True)
    Trainer(other, tmp_path / "run").fit()
    assert [f.stat().st_mtime_ns for f in files] != stamps


def test_cache_frozen_refuses_what_it_cannot_serve(sample_root, checkpoint, tmp_path):
    from stereo.train import Trainer

    with pytest.raises(ConfigError, match="augment.enabled=false"):
        Trainer(_cfg(sample_root, checkpoint, "data.augment.enabled=true"), tmp_path / "a")
    with pytest.raises(ConfigError, match="these still train: refinement"):
        Trainer(_cfg(sample_root, checkpoint, freeze=FROZEN[:2]), tmp_path / "b")
    with pytest.raises(ConfigError, match="has none"):
        cfg = make_tiny_cfg(sample_root, "data.augment.enabled=false", cache_frozen=True)
        Trainer(cfg, tmp_path / "c")
