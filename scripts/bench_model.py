"""Benchmark the networks: parameters, eval forward time and peak memory, training step time.

The tool is ``stereo.bench.model``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.bench.model import main

if __name__ == "__main__":
    run_tool(main)
