"""ONNX Runtime vs PyTorch eager at inference: time and peak memory, side by side in one run.

The tool is ``stereo.bench.onnx_runtime``; ``--help`` lists its keys.
"""

import sys

from stereo.bench.onnx_runtime import main

if __name__ == "__main__":
    main(sys.argv[1:])
