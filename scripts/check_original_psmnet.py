"""Check that an original PSMNet checkpoint gives the original code's disparities through our loader.

The tool is ``stereo.tools.check_original_psmnet``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.check_original_psmnet import main

if __name__ == "__main__":
    run_tool(main)
