"""Collect the attention study's runs into docs/attention_study.md (and JSON).

The tool is ``stereo.tools.attention_study``; ``--help`` lists its keys.
"""

import sys

from stereo.tools.attention_study import main

if __name__ == "__main__":
    main(sys.argv[1:])
