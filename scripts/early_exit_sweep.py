"""Speed/accuracy of early exit over the hourglass heads: one evaluation per setting, side by side.

The tool is ``stereo.tools.early_exit_sweep``; ``--help`` lists its keys.
"""

import sys

from stereo.tools.early_exit_sweep import main

if __name__ == "__main__":
    main(sys.argv[1:])
