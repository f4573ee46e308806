"""Evaluate OpenCV SGBM and any checkpoints on one dataset, in both passes, side by side.

The tool is ``stereo.tools.compare_methods``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.compare_methods import main

if __name__ == "__main__":
    run_tool(main)
