import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from stereo.checkpoint import load_checkpoint
from stereo.data.sceneflow import SceneFlowError
from stereo.errors import ConfigError
from stereo.metrics import disparity_metrics
from stereo.train import Trainer, epoch_batches, train
from tests.conftest import REPO
from tests.conftest import make_tiny_cfg as tiny_cfg


def scalars(run_dir):
    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc.Tags()["images"]


def test_few_steps_leave_checkpoint_and_events(sample_root, tmp_path):
    summary = train(tiny_cfg(sample_root), tmp_path / "run")
    assert summary.step == 4 and summary.status == "finished"
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert {"model", "model_config", "optimizer", "scheduler", "scaler", "step", "epoch", "rng"} <= set(ckpt)
    assert ckpt["step"] == 4 and ckpt["model_config"]["max_disp"] == 32
    assert (tmp_path / "run/checkpoints/best.pt").is_file()
    assert (tmp_path / "run/config.yaml").is_file()
    values, images = scalars(tmp_path / "run")
    assert len(values["train/loss"]) == 4 and all(v > 0 for v in values["train/loss"])
    assert {"train/epe", "lr", "val/epe", "val/bad1", "val/bad3", "val/d1"} <= set(values)
    assert values["hparam/val_epe"] == pytest.approx(values["val/epe"][-1:])  # the HParams view's metric
    assert len(values["val/epe"]) == 2  # at step 2 and at the end
    assert images == ["images/panel"]  # one combined panel: left | ground truth | prediction | error
    assert summary.val.images == 2 and summary.val.epe == pytest.approx(values["val/epe"][-1], rel=1e-5)
    assert not list((tmp_path / "run/checkpoints").glob(".*tmp*"))
    import json

    saved = json.loads((tmp_path / "run/summary.json").read_text())  # one file per run for studies
    assert saved["step"] == 4 and saved["val"]["epe"] == pytest.approx(summary.val.epe)
    assert saved["hparams"]["attention"] == "efficient@layer4"
    assert 0 < saved["train_seconds"] < saved["seconds_this_process"]  # validation is not step time
    assert saved["seconds_per_step"] == pytest.approx(saved["train_seconds"] / 4)


def test_seconds_per_step_counts_only_timed_steps_after_resuming_an_older_checkpoint(sample_root, tmp_path):
    import json

    train(tiny_cfg(sample_root, max_steps=2), tmp_path / "run")
    path = tmp_path / "run/checkpoints/last.pt"
    ckpt = torch.load(path, weights_only=True)
    for key in ("train_seconds", "timed_steps"):  # as written before these counters existed
        del ckpt["train_state"][key]
    torch.save(ckpt, path)
    train(tiny_cfg(sample_root, max_steps=4, resume=True), tmp_path / "run")
    saved = json.loads((tmp_path / "run/summary.json").read_text())
    assert saved["step"] == 4 and saved["steps_this_process"] == 2
    assert saved["seconds_per_step"] == pytest.approx(saved["train_seconds"] / 2)  # not / 4


def test_budget_steps_fill_the_remaining_time():
    from stereo.train import budget_steps

    assert budget_steps(10, 5.0, 0.5, 20.0) == 40  # 15 s left at 0.5 s a step
    assert budget_steps(10, 5.0, 0.7, 20.0) == 31  # 21.4 steps: the last partial one is not started
    assert budget_steps(10, 25.0, 0.5, 20.0) == 10  # over budget already: stop here


def test_time_budget_sizes_the_cosine_and_a_resume_keeps_or_resizes_it(sample_root, tmp_path, monkeypatch):
    """A clock that advances 1 s per reading makes every step take 1 s: after 2 untimed and 20 timed
    steps a 0.5-minute budget leaves 8 more steps; the cosine reaches zero at step 30."""
    import types

    import stereo.train

    clock = iter(range(10**6))
    monkeypatch.setattr(stereo.train, "time", types.SimpleNamespace(perf_counter=lambda: float(next(clock))))
    over = {"max_steps": 1000, "lr_schedule": "cosine", "val_every": 0, "image_every": 0, "ckpt_every": 0}
    run = tmp_path / "run"
    summary = train(tiny_cfg(sample_root, "val.limit=0", time_budget=0.5, **over), run)
    assert summary.step == summary.total_steps == 30 and summary.train_seconds == 30
    values, _ = scalars(run)
    assert values["lr"][-1] == 0 and values["lr"][20] > 0  # decayed to zero at the sized end
    again = train(tiny_cfg(sample_root, "val.limit=0", time_budget=0.5, resume=True, **over), run)
    assert again.step == again.total_steps == 30 and again.steps_this_process == 0  # the same length
    more = train(tiny_cfg(sample_root, "val.limit=0", time_budget=0.75, resume=True, **over), run)
    assert more.step == more.total_steps == 45  # a new budget, sized by the mean rate so far (1 s a step)
    capped = train(tiny_cfg(sample_root, "val.limit=0", time_budget=10.0, **{**over, "max_steps": 25}), tmp_path / "c")
    assert capped.step == capped.total_steps == 25  # max_steps stays the upper bound


def test_micro_batches_add_up_to_the_batch_gradient(sample_root, tmp_path):
    """With BatchNorm statistics kept (bn_eval), a batch of 4 run as parts of 2, whose valid pixels
    differ, gives the whole batch's gradient; with BatchNorm normalising each part it does not."""
    from torch.utils.data import default_collate

    from stereo.train import Trainer

    def grads(micro, bn_eval=True):
        cfg = tiny_cfg(sample_root, "val.limit=0", batch_size=4, micro_batch=micro, bn_eval=bn_eval)
        trainer = Trainer(cfg, tmp_path / f"run{micro}{bn_eval}")
        batch = default_collate([trainer.dataset[i] for i in range(4)])
        batch["valid"][0, :, : batch["valid"].shape[-1] // 2] = False  # the first part has fewer valid pixels
        loss, _, pred = trainer.train_step(batch)
        assert pred.shape == batch["disparity"].shape
        return loss, {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}

    loss, whole = grads(None)
    loss2, parts = grads(2)
    assert loss2 == pytest.approx(loss, rel=1e-5) and parts.keys() == whole.keys()
    scale = max(float(g.abs().max()) for g in whole.values())  # some are zero up to rounding (key biases)
    for n in whole:
        torch.testing.assert_close(parts[n], whole[n], rtol=1e-4, atol=1e-6 * scale, msg=n)
    _, batchnorm = grads(None, bn_eval=False)
    _, batchnorm2 = grads(2, bn_eval=False)
    assert any(not torch.allclose(batchnorm2[n], batchnorm[n], rtol=1e-2, atol=1e-6) for n in batchnorm)
    with pytest.raises(ConfigError, match="train.micro_batch=3 must divide train.batch_size=4"):
        Trainer(tiny_cfg(sample_root, batch_size=4, micro_batch=3), tmp_path / "bad")


def test_depth_edges_match_a_direct_scan():
    """Every pixel within ``radius`` (square window) of a pair of 4-neighbours more than ``jump`` px apart,
    found here by a plain scan of all such pairs; unknown (NaN/inf) ground truth never makes an edge."""
    from stereo.metrics import depth_edges

    g = torch.Generator().manual_seed(3)
    # Flat 6x8 blocks of 0, 2 or 4 px with 0.2 px of noise: edges at some block borders only.
    blocks = torch.randint(0, 3, (2, 2, 3), generator=g).double() * 2
    gt = blocks.repeat_interleave(6, 1).repeat_interleave(8, 2) + 0.2 * torch.rand(2, 12, 24, generator=g)
    gt[0, 4, 5], gt[1, 0, 0] = float("nan"), float("inf")
    B, H, W = gt.shape
    for radius, jump in [(0, 1.0), (1, 1.0), (2, 0.5)]:
        want = torch.zeros(B, H, W, dtype=torch.bool)
        for b in range(B):
            for y in range(H):
                for x in range(W):
                    for y2, x2 in ((y, x + 1), (y + 1, x)):
                        if y2 < H and x2 < W and abs(float(gt[b, y, x]) - float(gt[b, y2, x2])) > jump:
                            for yy, xx in ((y, x), (y2, x2)):
                                want[
                                    b, max(yy - radius, 0) : yy + radius + 1, max(xx - radius, 0) : xx + radius + 1
                                ] = True
        got = depth_edges(gt, radius, jump)
        assert torch.equal(got, want), (radius, jump)
        assert 0 < int(got.sum()) < got.numel()
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        depth_edges(gt[0], 1)


def test_region_edges_narrows_training_and_validation(sample_root, tmp_path):
    """data.region=edges keeps, in the training crops and the validation frames, only the valid pixels near a
    depth edge of the full-frame ground truth, as evaluation does."""
    from stereo.data.pfm import read_pfm
    from stereo.metrics import depth_edges, valid_mask

    plain = Trainer(tiny_cfg(sample_root, "val.limit=2"), tmp_path / "plain")
    edges = Trainer(tiny_cfg(sample_root, "val.limit=2", "data.region=edges", "data.edge_radius=1"), tmp_path / "e")
    for a, b in ((plain.dataset[0], edges.dataset[0]), (plain.val_dataset[1], edges.val_dataset[1])):
        assert torch.equal(a["disparity"], b["disparity"])  # the same crop: only the mask differs
        assert torch.equal(b["valid"], a["valid"] & b["valid"]) and 0 < int(b["valid"].sum()) < int(a["valid"].sum())
    gt = torch.from_numpy(read_pfm(edges.val_dataset.samples[1].disparity).copy())
    want = valid_mask(gt, "positive", edges.val_dataset.max_disp) & depth_edges(gt[None], 1)[0]
    assert torch.equal(edges.val_dataset[1]["valid"], want)


def test_the_loss_is_psmnets_weighted_smooth_l1_per_head(sample_root, tmp_path):
    """The step's loss: each head's smooth L1 (|e| - 0.5 beyond 1 px, e^2 / 2 within) over the valid pixels,
    weighted 0.5/0.7/1.0 from the last head back, recomputed here in float64 from the model before the step."""

    def expected(trainer, batch):
        heads = trainer.model(batch["left"], batch["right"]).heads
        v, gt = batch["valid"], batch["disparity"].double()
        per_head = []
        for h in heads:
            e = (h.double() - gt)[v].abs().numpy()
            per_head.append(float(np.where(e < 1, 0.5 * e**2, e - 0.5).mean()))
        return sum(w * x for w, x in zip((0.7, 1.0), per_head, strict=True)), per_head  # two heads: PSMNet's last two

    loss, want, per_head = _one_step(sample_root, tmp_path / "run", expected)
    assert loss == pytest.approx(want, rel=1e-5)
    assert len(per_head) == 2 and all(x > 0 for x in per_head)


def _one_step(sample_root, run, expected, *overrides, **train_keys):
    """(the loss of one training step, and what ``expected`` computes from the model before it)."""
    from torch.utils.data import default_collate

    cfg = tiny_cfg(sample_root, "val.limit=0", *overrides, batch_size=2, bn_eval=True, **train_keys)
    trainer = Trainer(cfg, run)
    batch = default_collate([trainer.dataset[i] for i in range(2)])
    trainer.model.train()
    for m in trainer.fixed:
        m.eval()
    with torch.no_grad():
        want, extra = expected(trainer, batch)
    loss, _, _ = trainer.train_step(batch)
    return loss, want, extra


def test_resume_gives_the_same_weights(sample_root, tmp_path):
    train(tiny_cfg(sample_root, max_steps=4), tmp_path / "straight")
    train(tiny_cfg(sample_root, max_steps=2), tmp_path / "split")
    first = load_checkpoint(tmp_path / "split/checkpoints/last.pt")["train_state"]["train_seconds"]
    summary = train(tiny_cfg(sample_root, max_steps=4, resume=True), tmp_path / "split")
    assert summary.step == 4
    import json

    saved = json.loads((tmp_path / "split/summary.json").read_text())
    assert saved["steps_this_process"] == 2 and saved["train_seconds"] > first > 0  # carried over the resume
    a = load_checkpoint(tmp_path / "straight/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "split/checkpoints/last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_resume_continues_on_the_device_it_loads_onto(sample_root, tmp_path, device):
    """A checkpoint is loaded onto the training device: its RNG states must reach the generators as CPU
    bytes (on CUDA they arrived as CUDA tensors and resuming stopped with "RNG state must be a ByteTensor")."""
    run = tmp_path / "run"
    train(tiny_cfg(sample_root, f"device={device}", "deterministic=false", max_steps=2, val_every=0), run)
    summary = train(tiny_cfg(sample_root, f"device={device}", "deterministic=false", max_steps=4, val_every=0,
                             resume=True), run)  # fmt: skip
    assert summary.status == "finished" and summary.step == 4
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 4


def test_bad_root_fails_before_model(tmp_path, monkeypatch):
    import stereo.train as t

    monkeypatch.setattr(t, "build_model", lambda cfg: pytest.fail("model built before the data check"))
    with pytest.raises(SceneFlowError, match="does not exist"):
        train(tiny_cfg(tmp_path / "missing"), tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneFlowError, match="not a Scene Flow root"):
        train(tiny_cfg(tmp_path / "empty"), tmp_path / "run")


def test_nonfinite_losses_are_skipped_then_stop_with_checkpoint(sample_root, tmp_path, monkeypatch):
    import stereo.train as t

    real = t.sequence_loss
    calls = []

    def flaky(*args):  # steps 2, 4, 5, 6 ... non-finite: one isolated skip, then a run of them
        calls.append(1)
        loss = real(*args)
        return loss * float("nan") if len(calls) in (2, 4, 5, 6, 7) else loss

    monkeypatch.setattr(t, "sequence_loss", flaky)
    cfg = tiny_cfg(sample_root, max_nonfinite=3, max_steps=6, val_every=0)
    with pytest.raises(t.TrainingStopped, match="3 non-finite losses in a row at step 2"):
        train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert ckpt["step"] == 2  # the two finite steps were taken, the skipped ones were not
    values, _ = scalars(tmp_path / "run")
    assert values["train/nonfinite_skipped"] == [1, 2, 3, 4]


def test_epoch_batches_split_across_ranks():
    full = epoch_batches(10, 2, epoch=3, seed=1, rank=0, world=1)
    r0 = epoch_batches(10, 2, epoch=3, seed=1, rank=0, world=2)
    r1 = epoch_batches(10, 2, epoch=3, seed=1, rank=1, world=2)
    assert len(full) == 5 and len(r0) == len(r1) == 2
    assert sorted(sum(r0 + r1, [])) == sorted(sum(full[:4], []))
    assert epoch_batches(10, 2, epoch=4, seed=1) != full


def test_metrics_hand_computed():
    gt = torch.tensor([[10.0, 20.0, 100.0, 50.0]])
    pred = torch.tensor([[10.5, 22.5, 104.0, 0.0]])
    valid = torch.tensor([[True, True, True, False]])
    m = disparity_metrics(pred, gt, valid)
    # errors 0.5, 2.5, 4.0 on valid pixels
    assert m["epe"] == pytest.approx(7.0 / 3)
    assert m["bad1"] == pytest.approx(200 / 3) and m["bad2"] == pytest.approx(200 / 3)
    assert m["bad3"] == pytest.approx(100 / 3)
    assert m["d1"] == pytest.approx(0.0)  # 4.0 px is only 4% of 100
    assert m["bad05"] == pytest.approx(200 / 3)  # 0.5 px is not above 0.5
    assert m["pixels"] == 3
    perfect = disparity_metrics(gt, gt, valid)
    assert all(perfect[k] == 0 for k in ("epe", "bad05", "bad1", "bad2", "bad3", "d1"))
    empty = disparity_metrics(pred, gt, torch.zeros_like(valid))
    assert empty["pixels"] == 0 and empty["epe"] != empty["epe"]


def test_error_bands_count_the_pixels_in_each_band():
    """Each band's share, counted here pixel by pixel with the bounds on the lower side: (a, b] px."""
    from stereo.metrics import error_bands

    errors = torch.tensor([0.0, 0.2, 0.5, 0.51, 0.9, 1.0, 1.7, 2.0, 2.2, 3.0, 3.1, 40.0])
    gt = torch.full((1, 12), 50.0)
    m = disparity_metrics(gt + errors * torch.tensor([1.0, -1.0] * 6), gt, torch.ones(1, 12, dtype=torch.bool))
    counts = {"<=0.5": 3, "0.5-1": 3, "1-2": 2, "2-3": 2, ">3": 2}
    bands = error_bands(m)
    assert list(bands) == list(counts)
    for k, n in counts.items():
        assert bands[k] == pytest.approx(100 * n / 12, abs=1e-4), k


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "device",
    [
        "cpu",  # Gloo
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs a GPU per process: 2 GPUs"),
            ],
        ),  # fmt: skip
    ],
)
def test_two_process_ddp(sample_root, tmp_path, device):
    """Two processes (torchrun): Gloo on CPUs, NCCL on two GPUs; one checkpoint, rank 0 logs. Batches of 4
    in parts of 2: the gradients are averaged across ranks once, after the last part (no_sync before)."""
    args = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        str(REPO / "scripts/train.py"),
        "model=ea_psmnet_light", f"data.root={sample_root}", "data.crop_size=[32,64]", "model.max_disp=32",
        f"device={device}", "train.batch_size=4", "train.micro_batch=2", "train.max_steps=3", "train.num_workers=0",
        "train.log_every=1",
        "val.limit=2", "train.sync_bn=true", f"hydra.run.dir={tmp_path / 'ddp'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp/checkpoints/last.pt")
    assert ckpt["step"] == 3
    assert not any(k.startswith("module.") for k in ckpt["model"])
    values, _ = scalars(tmp_path / "ddp")
    assert len(values["train/loss"]) == 3 and "val/epe" in values
    assert len(list((tmp_path / "ddp/tensorboard").iterdir())) == 1  # only rank 0 writes


@pytest.mark.slow
def test_sigint_writes_last_checkpoint_and_resume_continues(sample_root, tmp_path):
    import signal
    import time

    run = tmp_path / "sig"
    args = [
        sys.executable, str(REPO / "scripts/train.py"), "model=ea_psmnet_light", f"data.root={sample_root}",
        "data.crop_size=[32,64]", "model.max_disp=32", "device=cpu", "train.batch_size=2",
        "train.num_workers=0", "train.ckpt_every=0", "val.limit=0", f"hydra.run.dir={run}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args + ["train.max_steps=100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (run / "tensorboard").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(3)  # let a few steps run
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]  # as the shell reports Ctrl-C
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    # written on the signal (ckpt_every=0 writes nothing else), at the step the run reports
    assert f"interrupted by signal 2 after {ckpt['step']} steps" in out and ckpt["step"] >= 1
    more = [f"train.max_steps={ckpt['step'] + 2}", "train.resume=true"]
    resumed = subprocess.run(args + more, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == ckpt["step"] + 2


def test_worker_deaths_count_as_the_stop_only_when_a_signal_caused_them():
    """PyTorch reports workers ended by a group signal in two forms; any other worker error stays an error."""
    import signal

    from stereo.train import _signal_that_killed_workers

    killed = RuntimeError("DataLoader worker (pid 41) is killed by signal: Terminated. ")
    gone = RuntimeError("DataLoader worker (pid(s) 41, 42) exited unexpectedly")
    assert _signal_that_killed_workers(killed, None) == signal.SIGTERM
    assert (
        _signal_that_killed_workers(RuntimeError("DataLoader worker (pid 7) is killed by signal: Interrupt. "), None)
        == signal.SIGINT
    )
    assert _signal_that_killed_workers(killed, signal.SIGINT) == signal.SIGINT  # the one this process got
    try:  # re-raised with the signal report as its cause
        try:
            raise killed
        except RuntimeError as inner:
            raise RuntimeError("DataLoader worker (pid(s) 41) exited unexpectedly") from inner
    except RuntimeError as chained:
        assert _signal_that_killed_workers(chained, None) == signal.SIGTERM
    assert _signal_that_killed_workers(gone, signal.SIGTERM) == signal.SIGTERM
    assert _signal_that_killed_workers(gone, None) is None  # a crash (e.g. the OOM killer): an error
    assert (
        _signal_that_killed_workers(RuntimeError("DataLoader worker (pid 41) is killed by signal: Killed. "), None)
        is None
    )
    assert _signal_that_killed_workers(RuntimeError("CUDA out of memory"), signal.SIGTERM) is None


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_loader_workers_is_a_clean_stop(sample_root, tmp_path):
    """A scheduler or `timeout` signals every process of the group: the DataLoader workers die too,
    which PyTorch reports as an error. The run still stops as for its own SIGTERM: checkpoint, exit 143."""
    import signal
    import time

    run = tmp_path / "pg"
    args = [
        sys.executable, str(REPO / "scripts/train.py"), "model=ea_psmnet_light", f"data.root={sample_root}",
        "data.crop_size=[32,64]", "model.max_disp=32", "device=cpu", "train.batch_size=2",
        "train.num_workers=2", "train.ckpt_every=1", "val.limit=0", f"hydra.run.dir={run}", "train.max_steps=100000",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (run / "checkpoints/last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)  # a checkpoint every step: the first one means the workers are running
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "stopped by an error" not in err, err[-2000:]
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert f"interrupted by signal 15 after {ckpt['step']} steps" in out and ckpt["step"] >= 1
