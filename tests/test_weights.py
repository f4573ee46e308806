"""Shipped-weights mechanism: export a checkpoint without its training state; infer/eval fall back to it."""

import pytest
import torch

import stereo.weights as w
from stereo.checkpoint import load_checkpoint, load_model
from stereo.config import load_config
from stereo.errors import ConfigError
from stereo.evaluate import slice_metrics
from stereo.infer import infer


def test_export_keeps_what_inference_needs(checkpoint, tmp_path):
    card = {"data": "generated v2", "steps": 2}
    size = w.export_weights(checkpoint, tmp_path / "w.pt", card)
    slim = load_checkpoint(tmp_path / "w.pt")
    assert set(slim) == {"model", "model_config", "step", "card"} and slim["card"] == card
    assert size == (tmp_path / "w.pt").stat().st_size < checkpoint.stat().st_size  # no optimizer state
    full, _ = load_model(checkpoint, torch.device("cpu"))
    slim_model, _ = load_model(tmp_path / "w.pt", torch.device("cpu"))
    for (k, a), b in zip(full.state_dict().items(), slim_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_no_checkpoint_means_the_shipped_weights(checkpoint, sample_root, tmp_path, monkeypatch):
    monkeypatch.setattr(w, "WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(ConfigError, match="checkpoint is required .* ships no weights"):
        w.resolve_checkpoint(None)
    w.export_weights(checkpoint, tmp_path / "weights" / w.DEFAULT_WEIGHTS, {"note": "test"})
    assert w.resolve_checkpoint(None) == str(tmp_path / "weights" / w.DEFAULT_WEIGHTS)
    s = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[0]
    cfg = load_config("infer", [f"left={s}", f"right={s.parent.parent / 'right' / s.name}", "device=cpu"])
    (r,) = infer(cfg, tmp_path / "out")
    assert r["disparity_max"] > r["disparity_min"] >= 0


def test_shipped_weights_reproduce_their_card(tmp_path):
    """The committed weights give the metrics their card records, on a slice of generated-v1 rebuilt here."""
    shipped = w.shipped_checkpoint()
    assert shipped is not None, f"the package ships no weights at {w.WEIGHTS_DIR / w.DEFAULT_WEIGHTS}"
    card = load_checkpoint(shipped)["card"]["generated_v1_slice"]
    got = slice_metrics(shipped, tmp_path)
    assert {k: got[k] for k in w.SLICE} == {k: card[k] for k in w.SLICE}
    for p in ("clean", "final"):
        # Tolerances cover float differences between machines (BLAS, PNG decoders), not another model.
        assert abs(got[p]["epe"] - card[p]["epe"]) <= 0.02 + 0.005 * card[p]["epe"], (p, got[p], card[p])
        for k in ("bad1", "bad2", "bad3"):
            assert abs(got[p][k] - card[p][k]) <= 0.3, (p, k, got[p], card[p])
