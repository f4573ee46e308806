"""Speed/accuracy of early exit over the hourglass heads: one evaluation per setting, side by side.

The tool is ``stereo.tools.early_exit_sweep``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.early_exit_sweep import main

if __name__ == "__main__":
    run_tool(main)
