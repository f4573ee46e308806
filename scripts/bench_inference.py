"""Inference cost from Scene Flow size to full-resolution Middlebury, against the original PSMNet and the
machine's roofline.

The tool is ``stereo.bench.inference``; ``--help`` lists its keys.
"""

import sys

from stereo.bench.inference import main

if __name__ == "__main__":
    main(sys.argv[1:])
