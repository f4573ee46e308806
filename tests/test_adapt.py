"""Self-supervised losses and test-time adaptation (adapt=true)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stereo.adapt import adapt_infer, check_adaptable
from stereo.config import load_config
from stereo.errors import ConfigError
from stereo.losses import edge_aware_smoothness, occluded_from_disparity, photometric_loss, ssim_distance
from stereo.models import build_model
from stereo.models.refinement import warp_right_to_left


def _pair(seed=0, h=64, w=128, disparity=7.4):
    g = torch.Generator().manual_seed(seed)
    right = F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), (h, w), mode="bicubic", align_corners=False)
    right = right.clamp(0, 1)
    disp = torch.full((1, h, w), disparity)
    left, _ = warp_right_to_left(right, disp)
    return left, right, disp


def _modes_model(seed=0):
    torch.manual_seed(seed)
    model = build_model(load_config("model/ea_psmnet_light", ["max_disp=32", "refine=modes"])).eval()
    torch.nn.init.normal_(model.refinement.head.weight, std=0.02)  # a refinement that does something
    return model


def test_ssim_distance_matches_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    x, y = (
        torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64),
        torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64),
    )
    got = ssim_distance(x, y)
    assert got.shape == x.shape and (got >= 0).all() and (got <= 1).all()
    assert ssim_distance(x, x).abs().max() < 1e-12
    a, b = x[0, 0, 2:5, 3:6].flatten(), y[0, 0, 2:5, 3:6].flatten()  # the 3 x 3 window of pixel (3, 4)
    ma, mb = a.mean(), b.mean()
    va, vb, cov = (a * a).mean() - ma**2, (b * b).mean() - mb**2, (a * b).mean() - ma * mb
    c1, c2 = 0.01**2, 0.03**2
    ssim = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    assert float(got[0, 0, 3, 4]) == pytest.approx(float((1 - ssim) / 2), abs=1e-12)


def test_occlusion_from_the_left_disparity_matches_a_direct_scan():
    g = torch.Generator().manual_seed(2)
    disp = torch.randint(0, 6, (3, 4, 30), generator=g).float() * 1.5
    got = occluded_from_disparity(disp, margin=0.5)
    for b in range(3):
        for y in range(4):
            land = [x - float(disp[b, y, x]) for x in range(30)]
            for x in range(30):
                hidden = any(land[q] < land[x] - 0.5 for q in range(x + 1, 30))
                assert bool(got[b, y, x]) == hidden, (b, y, x)
    assert got.any() and not got.all()


def test_photometric_loss_is_lowest_at_the_true_disparity():
    left, right, disp = _pair()
    losses = {dd: float(photometric_loss(left, right, disp + dd)) for dd in (-1.0, -0.5, 0.0, 0.5, 1.0)}
    assert min(losses, key=losses.get) == 0.0 and losses[0.0] < 0.6 * losses[1.0]
    assert edge_aware_smoothness(disp, left) == 0  # a constant disparity costs no smoothness


def test_adaptation_lowers_its_loss_and_leaves_the_shared_network_alone():
    model = _modes_model()
    left, right, _ = _pair(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():  # as the API calls it
        plain = model.infer(left, right, confidence=True)
        out = adapt_infer(model, left, right, confidence=True, steps=5, lr=1e-3)
        report = out.adaptation
    assert report.steps == 5 and report.loss_after < report.loss_before and report.adopted
    assert not torch.equal(out.disparity, plain.disparity) and out.disparity.shape == plain.disparity.shape
    assert torch.equal(out.confidence, plain.confidence)  # the network's confidence, which adaptation keeps
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # the shared weights unchanged


def test_nothing_to_match_returns_the_unadapted_prediction():
    model = _modes_model(1)
    blank = torch.full((1, 3, 64, 128), 0.4)
    with torch.inference_mode():
        plain = model.infer(blank, blank).disparity
        out = adapt_infer(model, blank, blank, steps=3)
        report = out.adaptation
    assert not report.adopted and "blank" in report.reason and torch.equal(out.disparity, plain)
    left, _, _ = _pair(4)
    with torch.inference_mode():
        plain = model.infer(left, left).disparity
        out = adapt_infer(model, left, left, steps=3)
        report = out.adaptation
    assert not report.adopted and "identical" in report.reason and torch.equal(out.disparity, plain)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # as the API runs precision=bf16
        plain = model.infer(left, left).disparity
        out = adapt_infer(model, left, left, steps=3)
    assert torch.equal(out.disparity, plain)  # the refinement runs in fp32 on both paths


def test_a_sub_pixel_stage_runs_after_the_refinement_as_in_infer():
    torch.manual_seed(5)
    model = build_model(load_config("model/ea_psmnet_light", ["max_disp=32", "refine=modes", "subpixel=match"]))
    model = model.eval()
    torch.nn.init.normal_(model.subpixel.out.weight, std=0.5)  # a stage that moves the answer
    left, _, _ = _pair(6)
    with torch.inference_mode():
        plain = model.infer(left, left).disparity
        out = adapt_infer(model, left, left, steps=2)  # identical views: the unadapted answer stands
        model.subpixel = None
        without = model.infer(left, left).disparity
    assert not out.adaptation.adopted and not torch.equal(plain, without)
    assert torch.allclose(out.disparity, plain, atol=1e-5)  # the stage ran: infer's answer, not the refinement's


def test_models_that_cannot_adapt_are_refused_before_any_work():
    plain = build_model(load_config("model/ea_psmnet_light", ["max_disp=32"])).eval()
    with pytest.raises(ConfigError, match="refine=none"):
        check_adaptable(plain)
    model = _modes_model()
    model.set_runtime(early_exit="head", exit_head=1)
    with pytest.raises(ConfigError, match="early_exit=off"):
        check_adaptable(model)
    model.set_runtime(early_exit="off", refinement=False)
    with pytest.raises(ConfigError, match="refinement=true"):
        check_adaptable(model)


def test_api_adapt_runs_through_predict_and_reports(tmp_path):
    from stereo.api import StereoModel

    model = StereoModel(_modes_model(2), torch.device("cpu"))
    left, right, _ = _pair(5, 60, 120)  # not multiples of 16: the padding stays out of the loss
    img = lambda t: (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
    pred = model.predict(img(left), img(right), adapt=True, adapt_steps=3)
    assert pred.disparity.shape == (60, 120) and pred.adaptation.steps == 3
    plain = model.predict(img(left), img(right))
    assert plain.adaptation is None
    with pytest.raises(ConfigError, match="adapt_steps=0"):
        model.predict(img(left), img(right), adapt=True, adapt_steps=0)
    plain_model = StereoModel(
        build_model(load_config("model/ea_psmnet_light", ["max_disp=32"])).eval(), torch.device("cpu")
    )
    with pytest.raises(ConfigError, match="refine=none"):
        plain_model.predict(img(left), img(right), adapt=True)


def _unlabeled_folder(sample_root, out, pairs=4):
    """data=folder's layout without disparity/: the first left/right PNGs of the generated sample."""
    import shutil

    lefts = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TRAIN").rglob("left/*.png"))[:pairs]
    for i, left in enumerate(lefts):
        for view, src in (("left", left), ("right", Path(str(left).replace("/left/", "/right/")))):
            (out / view).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, out / view / f"{i:04d}.png")
    return out


def test_unlabeled_folders_train_only_with_the_photometric_loss(sample_root, tmp_path):
    from stereo.data.registry import dataset_samples
    from stereo.errors import DatasetError
    from stereo.evaluate import evaluate
    from stereo.train import Trainer
    from tests.conftest import make_tiny_cfg

    root = _unlabeled_folder(sample_root, tmp_path / "pairs")
    samples = dataset_samples(load_config("eval", ["data=folder", f"data.root={root}"]).data, "test")
    assert len(samples) == 4 and all(s.disparity is None for s in samples)
    with pytest.raises(DatasetError, match=r"pairs/disparity does not exist.*train.loss=photometric"):
        Trainer(make_tiny_cfg(sample_root, "data=folder", f"data.root={root}", "val.limit=0"), tmp_path / "a")
    with pytest.raises(DatasetError, match=r"stereo-eval needs ground truth.*pairs/disparity does not exist"):
        evaluate(load_config("eval", ["data=folder", f"data.root={root}", "device=cpu"]), tmp_path / "e")
    with pytest.raises(DatasetError, match=r"validation \(val.limit=0 turns it off\) needs ground truth"):
        Trainer(make_tiny_cfg(sample_root, "data=folder", f"data.root={root}", loss="photometric"), tmp_path / "b")


def test_experiment_adapt_trains_the_refinement_alone_on_unlabeled_pairs(sample_root, tmp_path):
    """stereo-train experiment=adapt: the shipped network, refinement included, from a folder of pairs
    without ground truth; after two steps only the refinement has moved, and each step's loss is the
    photometric loss of the model before it (recomputed here)."""
    from torch.utils.data import default_collate

    from stereo.checkpoint import load_checkpoint
    from stereo.losses import occluded_from_disparity, photometric_loss
    from stereo.train import Trainer, adopt_init_architecture, train
    from stereo.weights import resolve_checkpoint

    root = _unlabeled_folder(sample_root, tmp_path / "pairs")
    over = ["experiment=adapt", f"data.root={root}", "data.crop_size=[64,128]", "train.max_steps=2",
            "train.num_workers=0", "device=cpu", "data.augment.enabled=false"]  # fmt: skip
    cfg = load_config("train", over)
    adopt_init_architecture(cfg)  # as stereo-train does: the shipped architecture
    trainer = Trainer(cfg, tmp_path / "check")
    batch = default_collate([trainer.dataset[i] for i in range(2)])
    trainer.model.train()
    for m in trainer.fixed:
        m.eval()
    with torch.no_grad():
        heads = trainer.model(batch["left"], batch["right"]).heads
        want = sum(w * photometric_loss(batch["left"], batch["right"], h, ~occluded_from_disparity(h))
                   for w, h in zip(trainer.weights, heads, strict=True))  # fmt: skip
    loss, epe, _ = trainer.train_step(batch)
    assert loss == pytest.approx(float(want), rel=1e-4)
    assert math.isnan(epe)  # no ground truth: no EPE (it read 0.000 in the progress bar)
    summary = train(cfg, tmp_path / "run")
    assert summary.step == 2
    before = load_checkpoint(resolve_checkpoint("shipped"))["model"]
    after = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["model"]
    moved = {k for k in before if not torch.equal(before[k], after[k].to(before[k].dtype))}
    assert moved and all(k.startswith("refinement.") for k in moved)


def test_eval_adapt_scores_the_adapted_answers(sample_root, tmp_path, checkpoint):
    """stereo-eval adapt=true scores what run(..., adapt_steps) answers for each pair, and says so in its report;
    methods without a refinement are refused before any pair."""
    from stereo.data.dataset import StereoDataset
    from stereo.data.registry import dataset_samples
    from stereo.evaluate import evaluate
    from stereo.methods import build_method
    from stereo.metrics import disparity_metrics
    from stereo.models import run

    over = ["checkpoint=shipped", f"data.root={sample_root}", "data.limit=1", "device=cpu", "max_disp=40"]
    cfg = load_config("eval", [*over, "adapt=true", "adapt_steps=2"])
    report = evaluate(cfg, tmp_path / "a", show_progress=False, tensorboard=False)
    assert report.adapt_steps == 2 and report.to_json()["adapt_steps"] == 2
    model, _ = build_method(cfg.method, cfg, torch.device("cpu"))
    item = StereoDataset(dataset_samples(cfg.data, "test")[:1], max_disp=40.0)[0]
    with torch.no_grad():
        out = run(model, item["left"][None], item["right"][None], adapt_steps=2)
    direct = disparity_metrics(out.disparity[0], item["disparity"], item["valid"])
    assert report.epe == pytest.approx(direct["epe"], abs=1e-6) and report.bad1 == pytest.approx(direct["bad1"])
    plain = evaluate(load_config("eval", over), tmp_path / "b", show_progress=False, tensorboard=False)
    assert plain.adapt_steps == 0
    with pytest.raises(ConfigError, match="method=sgbm has none"):
        evaluate(load_config("eval", [*over[1:], "method=sgbm", "adapt=true"]), tmp_path / "c", show_progress=False)
    with pytest.raises(ConfigError, match="refine=none"):
        evaluate(load_config("eval", [f"checkpoint={checkpoint}", *over[1:], "adapt=true"]), tmp_path / "d",
                 show_progress=False)  # fmt: skip


def test_adapt_steps_without_adapt_is_refused_in_eval_and_infer():
    """adapt_steps=N alone would answer unadapted while the user expects adaptation: both apps refuse it and
    name the way out; with adapt=true, or at its default, it passes."""
    from stereo.config import EvalAppConfig, InferAppConfig, check_config

    pair = ["left=a.png", "right=b.png"]
    for app, schema, base in (("eval", EvalAppConfig, []), ("infer", InferAppConfig, pair)):
        with pytest.raises(ConfigError, match="adapt_steps=5 sets the steps of adapt=true, which is off: add adapt"):
            check_config(load_config(app, [*base, "adapt_steps=5"]), schema)
        check_config(load_config(app, [*base, "adapt_steps=5", "adapt=true"]), schema)
        check_config(load_config(app, base), schema)
