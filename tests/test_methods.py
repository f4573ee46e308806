"""The methods registry: every method the tools run comes from one place and answers through one interface."""

import pytest
import torch

from stereo.config import load_config
from stereo.errors import ConfigError
from stereo.methods import METHODS, build_method
from stereo.models import run


def test_network_and_sgbm_answer_through_the_same_interface(checkpoint):
    left, right = torch.rand(1, 3, 40, 200), torch.rand(1, 3, 40, 200)
    cfg = load_config("eval", [f"checkpoint={checkpoint}", "sgbm.num_disparities=32"])
    network, origin = build_method("checkpoint", cfg, torch.device("cpu"))
    assert origin["checkpoint"] == str(checkpoint) and origin["step"] == 2
    sgbm, origin = build_method("sgbm", cfg, torch.device("cpu"))
    assert origin == {"checkpoint": None, "step": None} and sgbm.max_disp == 32
    for method, heads in ((network, [network.hourglasses]), (sgbm, None)):
        out = run(method, left, right)
        assert out.disparity.shape == (1, 40, 200) and out.heads == heads
    with pytest.raises(ConfigError, match="not available with method=sgbm"):
        run(sgbm, left, right, confidence=True)


def test_unknown_method_and_missing_onnx_file_are_named():
    assert set(METHODS) == {"checkpoint", "sgbm", "onnxruntime"}
    with pytest.raises(ConfigError, match="unknown method 'bm'; expected one of checkpoint, sgbm, onnxruntime"):
        build_method("bm", {}, torch.device("cpu"))
    with pytest.raises(ConfigError, match="needs onnx=<file.onnx>"):
        build_method("onnxruntime", load_config("infer", ["left=a", "right=b"]), torch.device("cpu"))
