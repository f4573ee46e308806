#!/usr/bin/env bash
# Sets up .venv if needed, then runs ruff, mypy and the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # the typed-config path ([tool.mypy] in pyproject.toml)
.venv/bin/python -m pytest "$@"
