"""Convert a checkpoint into a stereo checkpoint that every tool loads.

The tool is ``stereo.tools.convert_checkpoint``; ``--help`` lists its keys.
"""

import sys

from stereo.tools.convert_checkpoint import main

if __name__ == "__main__":
    main(sys.argv[1:])
