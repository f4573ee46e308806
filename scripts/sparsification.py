"""How well the confidence ranks pixels by error: a sparsification curve on a generated benchmark.

The tool is ``stereo.tools.sparsification``; ``--help`` lists its keys.
"""

import sys

from stereo.tools.sparsification import main

if __name__ == "__main__":
    main(sys.argv[1:])
