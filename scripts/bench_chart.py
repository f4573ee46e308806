"""Speed against accuracy on a CPU: SGBM and our networks, fp32 and bf16, one chart from one JSON.

The tool is ``stereo.bench.chart``; ``--help`` lists its keys.
"""

from stereo.apps import run_tool
from stereo.bench.chart import main

if __name__ == "__main__":
    run_tool(main)
