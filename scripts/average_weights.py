"""Average the weights of checkpoints of one architecture (a "model soup").

The tool is ``stereo.tools.average_weights``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.average_weights import main

if __name__ == "__main__":
    run_tool(main)
