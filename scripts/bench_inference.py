"""Inference cost from Scene Flow size to full-resolution Middlebury, against the original PSMNet and the
machine's roofline.

The tool is ``stereo.bench.inference``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.bench.inference import main

if __name__ == "__main__":
    run_tool(main)
