"""Collect the attention study's runs into docs/attention_study.md (and JSON).

The tool is ``stereo.tools.attention_study``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.tools.attention_study import main

if __name__ == "__main__":
    run_tool(main)
