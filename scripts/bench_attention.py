"""Benchmark every attention kind: forward and forward+backward time and peak memory, against efficient.

The tool is ``stereo.bench.attention``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.bench.attention import main

if __name__ == "__main__":
    run_tool(main)
