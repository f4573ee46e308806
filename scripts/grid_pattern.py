"""The 4-pixel pattern of a checkpoint's disparities on a generated benchmark, beside its ground truth.

The tool is ``stereo.tools.grid_pattern``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.grid_pattern import main

if __name__ == "__main__":
    run_tool(main)
