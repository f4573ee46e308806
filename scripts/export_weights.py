"""Export a training checkpoint as shipped weights (the model and its config, no training state).

The tool is ``stereo.tools.export_weights``; ``--help`` lists its keys.
"""

import sys

from stereo.tools.export_weights import main

if __name__ == "__main__":
    main(sys.argv[1:])
