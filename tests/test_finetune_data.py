"""Fine-tuning data: real benchmarks and your own folders are split into training and held-out
validation pairs that never overlap; sparse ground truth; the step learning-rate schedule."""

import shutil

import cv2
import numpy as np
import pytest

from stereo.config import load_config
from stereo.data.pfm import read_pfm
from stereo.data.registry import dataset_samples, sample_name
from stereo.errors import DatasetError
from stereo.train import Trainer, lr_factor, train
from tests.conftest import TINY_TRAIN


def _sceneflow_pairs(root, n):
    from stereo.data.sceneflow import discover

    return (discover(root, "train", "clean", cache=False) + discover(root, "test", "clean", cache=False))[:n]


def _kitti(sample_root, root, n=10):
    base = root / "training"
    for d in ("image_2", "image_3", "disp_occ_0", "disp_noc_0"):
        (base / d).mkdir(parents=True)
    for i, s in enumerate(_sceneflow_pairs(sample_root, n)):
        name = f"{i:06d}_10.png"
        shutil.copy(s.left, base / "image_2" / name)
        shutil.copy(s.right, base / "image_3" / name)
        png = np.round(read_pfm(s.disparity) * 256).astype(np.uint16)
        png[::2] = 0  # sparse, as LiDAR
        for d in ("disp_occ_0", "disp_noc_0"):
            cv2.imwrite(str(base / d / name), png)
    return root


def _cfg(root, name, *over):
    return load_config("train", [*TINY_TRAIN, f"data={name}", f"data.root={root}", "data.crop_size=[32,64]", *over])


def test_kitti_training_holds_out_the_last_fifth_in_sorted_order(sample_root, tmp_path):
    root = _kitti(sample_root, tmp_path / "kitti")
    cfg = _cfg(root, "kitti")
    tr, va, te = (dataset_samples(cfg.data, s) for s in ("train", "val", "test"))
    assert [sample_name(s) for s in va] == ["000008_10", "000009_10"] and len(tr) == 8 and len(te) == 10
    assert not {s.left for s in tr} & {s.left for s in va}
    (tmp_path / "val.txt").write_text("# held out\n000000_10\n000005_10\n")
    named = _cfg(root, "kitti", f"data.val_names={tmp_path / 'val.txt'}")
    assert [sample_name(s) for s in dataset_samples(named.data, "val")] == ["000000_10", "000005_10"]
    assert len(dataset_samples(named.data, "train")) == 8
    (tmp_path / "bad.txt").write_text("000099_10\n")
    with pytest.raises(DatasetError, match=r"val_names=.*bad\.txt: 1 name\(s\) match no pair: 000099_10"):
        dataset_samples(_cfg(root, "kitti", f"data.val_names={tmp_path / 'bad.txt'}").data, "val")
    trainer = Trainer(cfg, tmp_path / "run")  # validates on the held-out frames only
    assert len(trainer.val_dataset) == 2 and len(trainer.dataset) == 8


def test_training_on_sparse_kitti_ground_truth_runs(sample_root, tmp_path):
    root = _kitti(sample_root, tmp_path / "kitti", n=6)
    summary = train(_cfg(root, "kitti", "train.max_steps=2", "val.limit=-1"), tmp_path / "run")
    assert summary.step == 2 and np.isfinite(summary.val.epe) and summary.val.images == 1


def test_folder_dataset_matches_by_name_and_reads_every_format(sample_root, tmp_path):
    root = tmp_path / "mine"
    for i, s in enumerate(_sceneflow_pairs(sample_root, 6)):
        sub = f"scene{i % 2}/{i:04d}"
        for view, src in (("left", s.left), ("right", s.right)):
            (root / view / sub).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / view / f"{sub}.png")
        gt = read_pfm(s.disparity)
        (root / "disparity" / sub).parent.mkdir(parents=True, exist_ok=True)
        if i % 3 == 0:
            np.save(root / "disparity" / f"{sub}.npy", gt)
        elif i % 3 == 1:
            cv2.imwrite(str(root / "disparity" / f"{sub}.png"), np.round(gt * 256).astype(np.uint16))
        else:
            shutil.copy(s.disparity, root / "disparity" / f"{sub}.pfm")
    cfg = _cfg(root, "folder", "data.val_fraction=0.34")
    every = dataset_samples(cfg.data, "test")
    assert sorted(sample_name(s) for s in every) == sorted(f"scene{i % 2}/{i:04d}" for i in range(6))
    assert {s.disparity.suffix for s in every} == {".npy", ".png", ".pfm"}
    assert len(dataset_samples(cfg.data, "val")) == 2 and len(dataset_samples(cfg.data, "train")) == 4
    summary = train(_cfg(root, "folder", "train.max_steps=1"), tmp_path / "run")
    assert summary.step == 1 and np.isfinite(summary.val.epe)
    (root / "disparity/scene0/0000.npy").unlink()
    with pytest.raises(DatasetError, match=r"1 pair\(s\) have no disparity/<name>.*scene0/0000"):
        dataset_samples(cfg.data, "test")


def test_step_schedule_drops_at_the_listed_steps():
    f = lr_factor("step", 100, 0, [40, 80], 0.1)
    assert [f(0), f(39), f(40), f(79), f(80)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    cfg = load_config("train", ["experiment=finetune_kitti"])
    assert cfg.train.lr_schedule == "step" and list(cfg.train.lr_decay_steps) == [2600]


def test_freeze_keeps_weights_and_batchnorm_statistics(sample_root, tmp_path, checkpoint):
    import torch

    from stereo.checkpoint import load_checkpoint
    from stereo.errors import ConfigError
    from tests.conftest import make_tiny_cfg

    before = load_checkpoint(checkpoint)["model"]
    cfg = make_tiny_cfg(sample_root, "train.freeze=[feature_extraction]", init_from=str(checkpoint), max_steps=2)
    train(cfg, tmp_path / "run")
    after = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["model"]
    frozen = [k for k in before if k.startswith("feature_extraction.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # running stats included
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("aggregation."))
    with pytest.raises(ConfigError, match=r"train.freeze=\['features'\]: no module named features"):
        Trainer(make_tiny_cfg(sample_root, "train.freeze=[features]"), tmp_path / "r2")


def test_bn_eval_keeps_running_statistics_and_trains_the_rest(sample_root, tmp_path, checkpoint):
    import torch

    from stereo.checkpoint import load_checkpoint
    from tests.conftest import make_tiny_cfg

    before = load_checkpoint(checkpoint)["model"]
    train(make_tiny_cfg(sample_root, "train.bn_eval=true", init_from=str(checkpoint), max_steps=2), tmp_path / "r")
    after = load_checkpoint(tmp_path / "r/checkpoints/last.pt")["model"]
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith(".weight"))


def test_extra_roots_join_data_roots_pairs_for_training_but_not_another_val_root(sample_root, tmp_path):
    from stereo.errors import ConfigError

    other = tmp_path / "other"
    shutil.copytree(sample_root, other, ignore=shutil.ignore_patterns(".stereo_cache"))
    cfg = load_config("train", [*TINY_TRAIN, f"data.root={sample_root}", f"data.extra_roots=[{other}]"])
    first = dataset_samples(load_config("train", [*TINY_TRAIN, f"data.root={sample_root}"]).data, "train")
    second = dataset_samples(load_config("train", [*TINY_TRAIN, f"data.root={other}"]).data, "train")
    mixed = dataset_samples(cfg.data, "train")
    assert mixed == first + second and all(str(s.left).startswith(str(other)) for s in second)
    cfg.val.root = str(sample_root)  # validation on one root's test split: the mix's other roots stay out of it
    train_pairs, val_pairs = Trainer(cfg, tmp_path / "run")._samples()
    assert train_pairs == mixed and val_pairs and all(str(s.left).startswith(str(sample_root)) for s in val_pairs)
    cfg.data.extra_roots = [str(sample_root)]
    with pytest.raises(ConfigError, match="twice"):
        dataset_samples(cfg.data, "train")
