#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it. Idempotent: a second run with nothing
# changed installs nothing and prints nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.stereo-setup-stamp"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the project's dependency list changed.
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

echo "[setup] installing dependencies into $VENV (first run may take a minute)"
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build where a CPU wheel is at hand.
"$VENV/bin/python" -m pip install -qq --disable-pip-version-check "torch==2.13.0"
"$VENV/bin/python" -m pip install -qq --disable-pip-version-check -e ".[dev,onnx,generate,app]"
echo "$want" > "$STAMP"
echo "[setup] done"
