"""Benchmark every attention kind: forward and forward+backward time and peak memory, against efficient.

The tool is ``stereo.bench.attention``; ``--help`` lists its keys.
"""

import sys

from stereo.bench.attention import main

if __name__ == "__main__":
    main(sys.argv[1:])
