#!/usr/bin/env bash
# Create .venv (if missing) and install clsclip into it, editable, with the given extras.
# Usage: bash .ci/setup-venv.sh [EXTRAS]     e.g. bash .ci/setup-venv.sh dev,yolo
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
