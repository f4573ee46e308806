"""Generate stereo pairs in the official Scene Flow layout (PNG frames, PFM disparities).

The tool is ``stereo.tools.make_sceneflow_sample``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.make_sceneflow_sample import main

if __name__ == "__main__":
    run_tool(main)
