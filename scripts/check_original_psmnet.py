"""Check that an original PSMNet checkpoint gives the original code's disparities through our loader.

The tool is ``stereo.tools.check_original_psmnet``; ``--help`` lists its keys.
"""

import sys

from stereo.tools.check_original_psmnet import main

if __name__ == "__main__":
    main(sys.argv[1:])
