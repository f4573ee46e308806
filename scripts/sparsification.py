"""How well the confidence ranks pixels by error: a sparsification curve on a generated benchmark.

The tool is ``stereo.tools.sparsification``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.sparsification import main

if __name__ == "__main__":
    run_tool(main)
