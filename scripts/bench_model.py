"""Benchmark the networks: parameters, eval forward time and peak memory, training step time.

The tool is ``stereo.bench.model``; ``--help`` lists its keys.
"""

import sys

from stereo.bench.model import main

if __name__ == "__main__":
    main(sys.argv[1:])
