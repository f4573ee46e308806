"""Benchmark the data path: PFM reading vs OpenCV, discovery on a 40,000-pair tree, loader throughput.

The tool is ``stereo.bench.data``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.bench.data import main

if __name__ == "__main__":
    run_tool(main)
