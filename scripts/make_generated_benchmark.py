"""Build a fixed generated benchmark (``generated-v1``, the default, ``generated-v2`` or ``generated-v3``) and
check it against its manifest.

The tool is ``stereo.tools.make_generated_benchmark``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.make_generated_benchmark import main

if __name__ == "__main__":
    run_tool(main)
