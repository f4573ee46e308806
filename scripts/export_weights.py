"""Export a training checkpoint as shipped weights (the model and its config, no training state).

The tool is ``stereo.tools.export_weights``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.export_weights import main

if __name__ == "__main__":
    run_tool(main)
