"""ONNX Runtime vs PyTorch eager at inference: time and peak memory, side by side in one run.

The tool is ``stereo.bench.onnx_runtime``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.bench.onnx_runtime import main

if __name__ == "__main__":
    run_tool(main)
