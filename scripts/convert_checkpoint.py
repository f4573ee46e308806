"""Convert a checkpoint into a stereo checkpoint that every tool loads.

The tool is ``stereo.tools.convert_checkpoint``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.convert_checkpoint import main

if __name__ == "__main__":
    run_tool(main)
