"""Evaluate OpenCV SGBM and any checkpoints on one dataset, in both passes, side by side.

The tool is ``stereo.tools.compare_methods``; ``--help`` lists its keys.
"""

import sys

from stereo.tools.compare_methods import main

if __name__ == "__main__":
    main(sys.argv[1:])
