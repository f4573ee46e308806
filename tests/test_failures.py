"""Failure cases: nothing lost, every bad input named. Library-level checks here; the real entry points
are driven in subprocesses in test_cli.py."""

import shutil

import numpy as np
import pytest
import torch

from stereo.apps import run, user_message
from stereo.checkpoint import load_checkpoint, load_weights
from stereo.data.disparity import read_disparity
from stereo.data.pfm import read_pfm, write_pfm
from stereo.data.registry import apply_limit
from stereo.errors import CheckpointError, ConfigError, DataError, DatasetError
from stereo.train import epoch_batches, train


def _copy(sample_root, tmp_path):
    root = tmp_path / "SceneFlow"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns(".stereo_cache"))
    return root


def _train_disparities(root):
    from stereo.data.sceneflow import discover

    return discover(root, "train", "clean", cache=False)


def test_batch_one_that_cannot_train_fails_before_any_step(sample_root, tmp_path, tiny_cfg):
    cfg = tiny_cfg(sample_root, "data.crop_size=[64,128]", batch_size=1)
    with pytest.raises(ConfigError, match=r"batch of 1 at crop 64x128 cannot train.*train.batch_size >= 2.*>= 256"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run/checkpoints").exists()


def test_crop_larger_than_frames_fails_at_start(sample_root, tmp_path, tiny_cfg):
    with pytest.raises(ConfigError, match=r"data.crop_size=\[128,256\] is larger than the 64x128 frames"):
        train(tiny_cfg(sample_root, "data.crop_size=[128,256]"), tmp_path / "run")


def test_data_error_mid_training_keeps_the_steps_done(sample_root, tmp_path, tiny_cfg):
    root = _copy(sample_root, tmp_path)
    samples = _train_disparities(root)
    bad = samples[epoch_batches(len(samples), 2, epoch=0, seed=0)[2][0]].disparity  # read at step 3
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"{bad.name}: PFM data truncated"):
        train(tiny_cfg(root, max_steps=6, val_every=0, ckpt_every=0), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["step"] == 2


def test_batches_without_valid_pixels_are_skipped_then_stop(sample_root, tmp_path, tiny_cfg):
    root = _copy(sample_root, tmp_path)
    for s in _train_disparities(root):
        write_pfm(s.disparity, -np.ones_like(read_pfm(s.disparity)))
    from stereo.errors import TrainingStopped

    with pytest.raises(TrainingStopped, match="2 batches without a valid ground-truth pixel in a row at step 0"):
        train(tiny_cfg(root, max_no_valid=2, val_every=0), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["train_state"]["no_valid_total"] == 2


def test_resume_with_another_model_names_the_field(sample_root, tmp_path, tiny_cfg):
    train(tiny_cfg(sample_root, max_steps=1, val_every=0), tmp_path / "run")
    cfg = tiny_cfg(sample_root, "model.max_disp=48", max_steps=2, resume=True, val_every=0)
    with pytest.raises(CheckpointError, match=r"last\.pt: the run's model config differs.*max_disp: 32 -> 48"):
        train(cfg, tmp_path / "run")


def test_weights_that_do_not_fit_name_the_file(checkpoint):
    from stereo.config import load_config
    from stereo.models import build_model

    other = build_model(load_config("model/psmnet"))
    with pytest.raises(CheckpointError, match=r"last\.pt: weights do not fit.*missing.*shape mismatch"):
        load_weights(other, load_checkpoint(checkpoint)["model"], checkpoint)


def test_pfm_with_wrong_byte_order_is_rejected(tmp_path):
    disp = np.linspace(0.5, 90.0, 64 * 48, dtype=np.float32).reshape(64, 48)
    body = np.ascontiguousarray(disp[::-1]).astype(">f4").tobytes()  # big-endian data ...
    (tmp_path / "d.pfm").write_bytes(b"Pf\n48 64\n-1.0\n" + body)  # ... under a little-endian scale
    with pytest.raises(DataError, match=r"d\.pfm: .* cannot be disparities.*scale sign does not match"):
        read_disparity(tmp_path / "d.pfm")
    (tmp_path / "ok.pfm").write_bytes(b"Pf\n48 64\n1.0\n" + body)
    np.testing.assert_array_equal(read_disparity(tmp_path / "ok.pfm"), disp)


def test_limit_has_one_meaning():
    items = list(range(5))
    assert apply_limit(items, -1) == items and apply_limit(items, None) == items
    assert apply_limit(items, 0) == [] and apply_limit(items, 2) == [0, 1]
    with pytest.raises(ConfigError, match="val.limit=-2"):
        apply_limit(items, -2, "val.limit")


def test_eval_limit_minus_one_keeps_every_pair(checkpoint, sample_root, tmp_path):
    from stereo.config import load_config
    from stereo.evaluate import evaluate

    over = [f"checkpoint={checkpoint}", f"data.root={sample_root}", "device=cpu"]
    r = evaluate(load_config("eval", [*over, "data.limit=-1"]), tmp_path / "a", show_progress=False, tensorboard=False)
    assert r.pairs == 4
    with pytest.raises(DatasetError, match="no test pairs left"):
        evaluate(load_config("eval", [*over, "data.limit=0"]), tmp_path / "b", show_progress=False)


def test_dataloader_wrapped_errors_keep_their_message():
    from torch._utils import ExceptionWrapper

    try:
        raise DataError("/data/x.pfm: PFM data truncated")
    except DataError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(DataError) as info:
        wrapped.reraise()
    assert "Original Traceback" in str(info.value)
    assert user_message(info.value) == "/data/x.pfm: PFM data truncated"


def test_error_policy(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        run(interrupted)
    assert info.value.code == 130 and capsys.readouterr().err == "interrupted (Ctrl-C)\n"
    with pytest.raises(SystemExit) as info:
        run(lambda: open("/nonexistent/dir/file"))
    assert (
        info.value.code == 1 and capsys.readouterr().err == "error: /nonexistent/dir/file: No such file or directory\n"
    )
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run(lambda: 1 / 0)


def test_negative_focal_length_is_refused():
    from stereo.config import InferAppConfig, check_config, load_config

    cfg = load_config("infer", ["checkpoint=c.pt", "left=l.png", "right=r.png", "focal_px=-700", "baseline=0.5"])
    with pytest.raises(ConfigError, match="focal_px=-700.0: must be > 0"):
        check_config(cfg, InferAppConfig)


def test_stale_and_truncated_discovery_cache_rescan(sample_root, tmp_path, caplog):
    from stereo.data.sceneflow import discover

    root = _copy(sample_root, tmp_path)
    first = discover(root, "test", "clean")
    first[0].left.unlink()  # deleted after the cache was written: its pair must vanish, not fail later
    first[0].right.unlink()
    assert discover(root, "test", "clean") == first[1:]
    cache = next((root / ".stereo_cache").glob("*test_clean*"))
    cache.write_text(cache.read_text()[:-40])  # truncated mid-line
    assert discover(root, "test", "clean") == first[1:]
    assert "unreadable discovery cache" in caplog.text and cache.name in caplog.text


def test_checkpoint_write_failure_names_the_file(tmp_path, monkeypatch):
    from stereo.checkpoint import save_checkpoint
    from stereo.errors import OutputError

    (tmp_path / "ckpt").write_text("a file where a folder should be")
    with pytest.raises(OutputError, match=r"cannot write .*ckpt/last\.pt"):
        save_checkpoint(tmp_path / "ckpt/last.pt", {"model": torch.zeros(1)})
