"""Shipped-weights mechanism: export a checkpoint without its training state; infer/eval fall back to it."""

import pytest
import torch

import stereo.weights as w
from stereo.checkpoint import load_checkpoint, load_network
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
    full, _ = load_network(checkpoint, torch.device("cpu"))
    slim_model, _ = load_network(tmp_path / "w.pt", torch.device("cpu"))
    for (k, a), b in zip(full.state_dict().items(), slim_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_export_tool_writes_the_card_tables_and_slice_it_measured(checkpoint, sample_root, tmp_path):
    """scripts/export_weights.py: the card holds the compare_methods rows (error bands included), the
    training config and step, what ``card=`` adds, and the slice metrics of the exported file itself."""
    import json

    from stereo.tools.compare_methods import main as compare
    from stereo.tools.export_weights import TABLE_KEYS
    from stereo.tools.export_weights import main as export

    table = tmp_path / "table.json"
    compare([f"root={sample_root}", f"checkpoints={{tiny: {checkpoint}}}", "passes=[final]", "max_disp=32",
             f"out={table}"])  # fmt: skip
    out = tmp_path / "w.pt"
    export([f"checkpoint={checkpoint}", f"out={out}", f"tables={{sample: {table}}}", "card={hardware: test}"])
    card = load_checkpoint(out)["card"]
    rows = json.loads(table.read_text())["results"]
    assert card["sample"] == [{k: r[k] for k in TABLE_KEYS} for r in rows] and len(rows) == 2
    assert all(set(r["bands"]) == {"<=0.5", "0.5-1", "1-2", "2-3", ">3"} for r in card["sample"])
    saved = load_checkpoint(checkpoint)
    assert card["step"] == saved["step"] and card["training_config"] == saved["config"] and card["hardware"] == "test"
    assert card["generated_v1_slice"] == slice_metrics(out, tmp_path / "slice")


def test_no_checkpoint_means_the_shipped_weights(checkpoint, sample_root, tmp_path, monkeypatch):
    monkeypatch.setattr(w, "WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(ConfigError, match="checkpoint is required .* ships no weights"):
        w.resolve_checkpoint(None)
    w.export_weights(checkpoint, tmp_path / "weights" / w.DEFAULT_WEIGHTS, {"note": "test"})
    assert w.resolve_checkpoint(None) == str(tmp_path / "weights" / w.DEFAULT_WEIGHTS)
    s = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[0]
    cfg = load_config("infer", [f"left={s}", f"right={s.parent.parent / 'right' / s.name}", "device=cpu"])
    (r,) = infer(cfg, tmp_path / "out")
    assert r.disparity_max > r.disparity_min >= 0


def test_shipped_names_the_packaged_weights_in_checkpoint_and_init_from(checkpoint, sample_root, tmp_path, monkeypatch):
    from stereo.train import Trainer
    from tests.conftest import make_tiny_cfg

    monkeypatch.setattr(w, "WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(ConfigError, match="ships no weights"):
        Trainer(make_tiny_cfg(sample_root, init_from="shipped"), tmp_path / "none")
    w.export_weights(checkpoint, tmp_path / "weights" / w.DEFAULT_WEIGHTS, {"note": "test"})
    assert w.resolve_checkpoint("shipped") == str(tmp_path / "weights" / w.DEFAULT_WEIGHTS)
    assert w.resolve_checkpoint("runs/x.pt") == "runs/x.pt"  # any other value is a path
    model = Trainer(make_tiny_cfg(sample_root, init_from="shipped"), tmp_path / "run").model.state_dict()
    saved = load_checkpoint(checkpoint)["model"]
    assert all(torch.equal(model[k].cpu(), v) for k, v in saved.items())


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


def test_average_weights_is_the_weighted_mean_and_loads(checkpoint, tmp_path):
    """scripts/average_weights.py: every floating tensor is the weighted mean (checked in float64), integer
    tensors come from the last file, and the result loads as a model; other architectures are refused."""
    from stereo.checkpoint import save_checkpoint
    from stereo.tools.average_weights import main

    a = load_checkpoint(checkpoint)
    g = torch.Generator().manual_seed(0)
    b = {**a, "model": {k: v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 7
                        for k, v in a["model"].items()}}  # fmt: skip
    save_checkpoint(tmp_path / "b.pt", b)
    main([f"checkpoints=[{checkpoint},{tmp_path / 'b.pt'}]", "weights=[1,3]", f"out={tmp_path / 'soup.pt'}"])
    soup = load_checkpoint(tmp_path / "soup.pt")
    assert soup["averaged"]["weights"] == [0.25, 0.75] and soup["model_config"] == a["model_config"]
    floats = 0
    for k, v in a["model"].items():
        if v.is_floating_point():
            want = 0.25 * v.double() + 0.75 * b["model"][k].double()
            torch.testing.assert_close(soup["model"][k].double(), want, rtol=1e-6, atol=1e-6, msg=k)
            floats += 1
        else:
            assert torch.equal(soup["model"][k], b["model"][k]), k
    assert floats > 10
    model, _ = load_network(tmp_path / "soup.pt", torch.device("cpu"))
    assert isinstance(model, torch.nn.Module)
    other = {**a, "model_config": {**a["model_config"], "max_disp": a["model_config"]["max_disp"] + 16}}
    save_checkpoint(tmp_path / "other.pt", other)
    with pytest.raises(ConfigError, match=r"other.pt: another architecture .*max_disp"):
        w.average_weights([checkpoint, tmp_path / "other.pt"])
    with pytest.raises(ConfigError, match="at least two checkpoints"):
        w.average_weights([checkpoint])
    with pytest.raises(ConfigError, match="positive numbers"):
        w.average_weights([checkpoint, tmp_path / "b.pt"], [1.0, 0.0])
