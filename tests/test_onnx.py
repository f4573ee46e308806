"""ONNX export: parity with PyTorch at sizes other than the export size, and the ONNX Runtime backend of
stereo-infer giving the same outputs as the PyTorch one."""

import numpy as np
import pytest
import torch

from stereo.config import load_config, to_plain
from stereo.data.pfm import read_pfm
from stereo.errors import CheckpointError, ConfigError
from stereo.models import build_model, configure_runtime, run


def _disparity(model, left, right):
    """The (B, H, W) disparity of ``run`` for (B, 3, H, W) images of any size."""
    return run(model, left, right).disparity


onnxruntime = pytest.importorskip("onnxruntime")  # the [onnx] extra; CI installs it
pytestmark = pytest.mark.slow


def _checkpoint(name, path, overrides=()):
    torch.manual_seed(0)
    cfg = load_config(f"model/{name}", list(overrides))
    model = build_model(cfg)
    if model.refinement.refines:  # untrained it is the identity: give it something to export
        torch.nn.init.normal_(model.refinement.head.weight, std=0.05)
    if model.subpixel is not None:
        torch.nn.init.normal_(model.subpixel.out.weight, std=0.05)
        if model.subpixel.selector is not None:
            torch.nn.init.normal_(model.subpixel.selector.out.weight, std=0.05)
            torch.nn.init.constant_(model.subpixel.selector.gain, 0.1)
    torch.save({"model": model.state_dict(), "model_config": to_plain(cfg), "step": 0}, path)
    return path


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("ea_psmnet_light", []),
        ("ea_psmnet", []),
        ("psmnet", []),
        # Its refinement (refine=modes) picks an argmax that random weights leave to rounding: see the next test.
        ("ea_psmnet_fast", ["refine=none"]),
        ("ea_psmnet_light", ["subpixel=match", "subpixel_steps=2"]),
        ("ea_psmnet_light", ["subpixel=match", "subpixel_select=learned", "subpixel_rounds=1"]),
    ],
    ids=["ea_psmnet_light", "ea_psmnet", "psmnet", "ea_psmnet_fast", "subpixel", "subpixel_select"],
)
def test_onnx_runtime_matches_pytorch(name, overrides, tmp_path):
    from stereo.checkpoint import load_network
    from stereo.export import OnnxStereo, export_onnx

    ckpt = _checkpoint(name, tmp_path / "c.pt", overrides)
    meta = export_onnx(ckpt, tmp_path / "m.onnx")
    h0, w0 = meta.min_height, meta.min_width
    ort_model = OnnxStereo(tmp_path / "m.onnx")
    model, _ = load_network(ckpt, torch.device("cpu"))
    for h, w in ((h0 + 16, w0 + 32), (h0 + 48, w0 - 8 + 16)):  # neither is the export size
        left, right = torch.rand(1, 3, h, w), torch.rand(1, 3, h, w)
        ref = _disparity(model, left, right)
        got = ort_model.infer(left, right).disparity
        assert got.shape == ref.shape == (1, h, w)
        assert (got - ref).abs().max().item() <= 1e-3, (name, h, w)
    # Below the minimum the backend pads further than run() does: same shape, finite, not bit-equal.
    small = torch.rand(1, 3, h0 - 40, 50)
    assert ort_model.infer(small, small).disparity.shape == (1, h0 - 40, 50)
    assert ort_model.max_disp == model.max_disp


def test_onnx_runtime_matches_pytorch_with_the_modes_refinement(tmp_path):
    """refine=modes picks each pixel's most likely disparity (an argmax): an untrained network's nearly flat
    distributions make that a coin toss that rounding decides, so the network here is the shipped one (its
    refinement head random; its sub-pixel stage, if it has one, as shipped) on generated scenes, where the
    modes are clear (but not every one)."""
    from stereo.checkpoint import init_weights, load_checkpoint, load_network
    from stereo.data.images import imread_checked
    from stereo.data.synthetic import generate_sceneflow_sample
    from stereo.export import OnnxStereo, export_onnx
    from stereo.weights import shipped_checkpoint

    shipped = shipped_checkpoint()
    assert shipped is not None
    torch.manual_seed(0)
    cfg = load_checkpoint(shipped)["model_config"]
    assert cfg["refine"] == "modes"
    model = build_model(cfg)
    init_weights(model, shipped, cfg)
    torch.nn.init.normal_(model.refinement.head.weight, std=0.05)
    torch.save({"model": model.state_dict(), "model_config": to_plain(cfg), "step": 0}, tmp_path / "c.pt")
    meta = export_onnx(tmp_path / "c.pt", tmp_path / "m.onnx")
    h, w = meta.min_height + 16, meta.min_width + 32  # not the export size
    generate_sceneflow_sample(tmp_path / "sf", height=h, width=w, train_pairs=0, test_pairs=2, seed=3, progress=False)
    ort_model = OnnxStereo(tmp_path / "m.onnx")
    model, _ = load_network(tmp_path / "c.pt", torch.device("cpu"))
    lefts = sorted((tmp_path / "sf/FlyingThings3D/frames_finalpass/TEST").rglob("left/*.png"))
    assert len(lefts) == 2
    for s in lefts:
        left, right = (
            torch.from_numpy(np.asarray(imread_checked(p))).permute(2, 0, 1)[None].float() / 255
            for p in (s, s.parent.parent / "right" / s.name)
        )
        ref = _disparity(model, left, right)
        got = ort_model.infer(left, right).disparity
        assert got.shape == ref.shape == (1, h, w)
        # Where two modes nearly tie, the backends' rounding can pick either (seen on an Intel CPU with AMX:
        # 3 of 23,040 pixels off by up to 3e-3 px). What holds on any CPU: 1e-3 px on 99.9% of the pixels,
        # and no pixel off by a gross error.
        err = (got - ref).abs()
        assert (err > 1e-3).float().mean().item() <= 1e-3, (s, err.max().item())
        assert err.max().item() <= 1.0, s


def test_infer_backends_agree(checkpoint, sample_root, tmp_path):
    import cv2

    from stereo.export import export_onnx
    from stereo.infer import infer

    meta = export_onnx(checkpoint, tmp_path / "m.onnx")
    s = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[0]
    h, w = meta.min_height + 16, meta.min_width + 48  # a size the graph serves exactly
    for view, src in (("l.png", s), ("r.png", s.parent.parent / "right" / s.name)):
        cv2.imwrite(str(tmp_path / view), cv2.resize(cv2.imread(str(src)), (w, h)))
    pair = [f"left={tmp_path / 'l.png'}", f"right={tmp_path / 'r.png'}", "device=cpu"]
    infer(load_config("infer", [f"checkpoint={checkpoint}", *pair]), tmp_path / "torch")
    infer(load_config("infer", ["backend=onnxruntime", f"onnx={tmp_path / 'm.onnx'}", *pair]), tmp_path / "ort")
    a, b = read_pfm(tmp_path / "torch" / "l.pfm"), read_pfm(tmp_path / "ort" / "l.pfm")
    assert a.shape == b.shape == (h, w) and np.abs(a - b).max() <= 1e-3


def test_export_metadata_and_runtime_left_alone(checkpoint, tmp_path):
    import onnx

    from stereo.checkpoint import load_network
    from stereo.export import export_onnx

    meta = export_onnx(checkpoint, tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["max_disp"] == "32" and props == meta.metadata and "feature" in props["model_config"]
    assert meta.max_disp == 32 and meta.opset == 17 and meta.path == str(tmp_path / "m.onnx")
    model, _ = load_network(checkpoint, torch.device("cpu"))
    configure_runtime(model, {"eval_chunk_rows": 64})  # export changed nothing in the checkpoint
    assert model.runtime.eval_chunk_rows == 64


def test_bad_onnx_files_are_one_line(checkpoint, tmp_path):
    import onnx

    from stereo.export import OnnxStereo, export_onnx

    export_onnx(checkpoint, tmp_path / "m.onnx")
    data = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    for name in ("cut.onnx", "junk.onnx"):
        with pytest.raises(CheckpointError, match=rf"{name}: ONNX Runtime cannot load it"):
            OnnxStereo(tmp_path / name)
    model = onnx.load(str(tmp_path / "m.onnx"))
    for prop in model.metadata_props:
        if prop.key == "max_disp":
            prop.value = "lots"  # mislabelled metadata
    onnx.save(model, str(tmp_path / "bad_meta.onnx"))
    with pytest.raises(ConfigError, match=r"bad_meta\.onnx: its stereo-export metadata is not numeric"):
        OnnxStereo(tmp_path / "bad_meta.onnx")


def test_the_refinement_needs_an_opset_with_grid_sample(tmp_path):
    from stereo.export import export_onnx

    ckpt = _checkpoint("ea_psmnet_light", tmp_path / "c.pt", ["refine=modes"])
    with pytest.raises(ConfigError, match="refine=modes.*opset >= 16.*15"):
        export_onnx(ckpt, tmp_path / "m.onnx", opset=15)
    assert not (tmp_path / "m.onnx").exists()
    ckpt = _checkpoint("ea_psmnet_light", tmp_path / "s.pt", ["subpixel=match"])
    with pytest.raises(ConfigError, match="subpixel=match sample.*opset >= 16.*15"):
        export_onnx(ckpt, tmp_path / "m.onnx", opset=15)


def test_raw_onnx_runtime_below_the_minimum_size_pads_inside_the_graph(checkpoint, tmp_path):
    """Plain ONNX Runtime, without stereo's own padding, on inputs smaller than the size the graph was
    traced at (and not multiples of 16): the graph pads them itself, so the answer is the network's on
    the padded input, cropped back; it gave wrong disparities there before, without a word."""
    import onnxruntime as ort
    import torch.nn.functional as F

    from stereo.checkpoint import load_network
    from stereo.export import export_onnx

    meta = export_onnx(checkpoint, tmp_path / "m.onnx")
    mh, mw = meta.min_height, meta.min_width
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    model, _ = load_network(checkpoint, torch.device("cpu"))
    configure_runtime(model, {"eval_chunk_rows": 0, "channels_last_3d": False})
    torch.manual_seed(0)
    for h, w in ((mh // 2 + 3, mw // 2 + 5), (17, 21), (mh + 16, mw + 32)):
        left, right = torch.rand(1, 3, h, w), torch.rand(1, 3, h, w)
        (got,) = session.run(None, {"left": left.numpy(), "right": right.numpy()})
        pad = (0, max(mw, -(-w // 16) * 16) - w, 0, max(mh, -(-h // 16) * 16) - h)
        ref = _disparity(model, F.pad(left, pad, mode="replicate"), F.pad(right, pad, mode="replicate"))[:, :h, :w]
        assert got.shape == (1, h, w)
        assert np.abs(got - ref.numpy()).max() <= 1e-3, (h, w)
