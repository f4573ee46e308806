#!/usr/bin/env bash
# The main job on an embedded default: set up, then benchmark efficient vs dot-product attention at
# Scene Flow feature-map sizes and print the table (no user data needed; a few minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/bench_attention.py "$@"
