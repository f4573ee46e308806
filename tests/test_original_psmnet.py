"""Original PSMNet checkpoints (JiaRenChang/PSMNet's format): recognised by their keys, mapped onto our
psmnet both ways, older files without num_batches_tracked accepted, other models refused naming keys.
(Output equality with the original code: scripts/check_original_psmnet.py, which needs its checkout.)"""

import pytest
import torch

from stereo.api import untrained_model
from stereo.checkpoint import load_checkpoint, load_network, original_to_ours, ours_to_original
from stereo.errors import CheckpointError


@pytest.fixture(scope="module")
def ours():
    torch.manual_seed(0)
    return untrained_model("psmnet", device="cpu").network.state_dict()


def _save_original(path, state, old=False):
    """``state`` (ours) saved as the original main.py/finetune.py saves: a DataParallel state dict."""
    orig = {ours_to_original(k): v for k, v in state.items() if not (old and k.endswith("num_batches_tracked"))}
    torch.save({"epoch": 10, "state_dict": orig, "train_loss": 0.5}, path)


def test_names_map_both_ways(ours):
    names = list(ours)
    assert [original_to_ours(ours_to_original(k)) for k in names] == names
    assert ours_to_original("aggregation.dres2.conv1.0.0.weight") == "module.dres2.conv1.0.0.weight"
    assert ours_to_original("feature_extraction.branch1.0.1.running_mean") == (
        "module.feature_extraction.branch1.1.1.running_mean"  # the original's branch: AvgPool, convbn, ReLU
    )
    assert original_to_ours("module.classif3.2.weight") == "aggregation.classif3.2.weight"


@pytest.mark.parametrize("old", [False, True])
def test_original_checkpoint_loads_as_psmnet(ours, tmp_path, old):
    _save_original(tmp_path / "pretrained.tar", ours, old=old)  # old: saved before PyTorch 0.4.1
    ckpt = load_checkpoint(tmp_path / "pretrained.tar")
    assert ckpt["model_config"]["max_disp"] == 192 and ckpt["original"]["epoch"] == 10
    for k, v in ours.items():
        if not (old and k.endswith("num_batches_tracked")):
            assert torch.equal(ckpt["model"][k], v), k
    model, _ = load_network(tmp_path / "pretrained.tar", torch.device("cpu"), {"fold_batchnorm": False})
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ours.items() if not k.endswith("num_batches_tracked"))


def test_other_original_models_are_refused_naming_keys(ours, tmp_path):
    state = {ours_to_original(k): v for k, v in ours.items() if not k.startswith("aggregation.dres4")}
    state["module.classify.0.0.weight"] = torch.zeros(1)  # as PSMNet's 'basic' model has
    torch.save({"epoch": 1, "state_dict": state, "train_loss": 1.0}, tmp_path / "basic.tar")
    with pytest.raises(CheckpointError, match=r"basic\.tar: weights do not fit .*missing \(aggregation\.dres4.*"
                                              r"unexpected \(classify"):  # fmt: skip
        load_network(tmp_path / "basic.tar", torch.device("cpu"))


def test_converter_writes_a_project_checkpoint(ours, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    _save_original(tmp_path / "pretrained.tar", ours, old=True)
    proc = subprocess.run([sys.executable, str(REPO / "scripts/convert_checkpoint.py"),
                           f"checkpoint={tmp_path / 'pretrained.tar'}", f"out={tmp_path / 'psmnet.pt'}"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "original PSMNet checkpoint converted" in proc.stdout, proc.stderr
    ckpt = torch.load(tmp_path / "psmnet.pt", weights_only=True)
    assert ckpt["model_config"]["max_disp"] == 192 and "module.dres0.0.0.weight" not in ckpt["model"]
    assert torch.equal(ckpt["model"]["aggregation.classif3.2.weight"], ours["aggregation.classif3.2.weight"])


@pytest.mark.slow
def test_consoles_take_an_original_checkpoint(ours, sample_root, tmp_path):
    """The consoles are Hydra apps: reading the psmnet config for an original file must not initialise
    Hydra a second time ('GlobalHydra is already initialized')."""
    import subprocess
    import sys

    from stereo.data.pfm import read_pfm
    from tests.conftest import REPO, TINY_TRAIN

    tar = tmp_path / "pretrained.tar"
    _save_original(tar, ours)
    left = sorted((sample_root / "FlyingThings3D/frames_cleanpass/TEST").rglob("left/*.png"))[0]
    runs = {
        "infer": [sys.executable, str(REPO / "scripts/infer.py"), f"checkpoint={tar}", f"left={left}",
                  f"right={left.parent.parent / 'right' / left.name}", "device=cpu", f"output_dir={tmp_path / 'i'}"],
        "eval": [sys.executable, str(REPO / "scripts/evaluate.py"), f"checkpoint={tar}", f"data.root={sample_root}",
                 "data.limit=1", "device=cpu", f"hydra.run.dir={tmp_path / 'e'}"],
        "train": [sys.executable, str(REPO / "scripts/train.py"), "model=psmnet", f"data.root={sample_root}",
                  *(o for o in TINY_TRAIN if not o.startswith(("model", "train.max_steps", "val.limit"))),
                  f"train.init_from={tar}", "train.max_steps=1", "val.limit=0", f"hydra.run.dir={tmp_path / 't'}"],
    }  # fmt: skip
    for name, cmd in runs.items():
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        assert "GlobalHydra" not in proc.stderr
    assert read_pfm(tmp_path / "i" / f"{left.stem}.pfm").shape == (64, 128)
    assert (tmp_path / "e/metrics.json").is_file() and (tmp_path / "t/checkpoints/last.pt").is_file()
