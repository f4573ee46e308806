"""Overhead of the Python API over the network alone, side by side (each variant in a fresh process).

The tool is ``stereo.bench.api``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.bench.api import main

if __name__ == "__main__":
    run_tool(main)
