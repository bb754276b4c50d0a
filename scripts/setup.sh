#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with the pinned working set.
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
# torch first and pinned, so nothing else can pull a CUDA build.
"${PIP[@]}" install -q -c constraints.txt "torch==2.13.0"
"${PIP[@]}" install -q -c constraints.txt -e ".[full,dev,cluster,pretrain,chronos]"
# Their declared pins conflict with the set above; their real runtime needs are already installed.
"${PIP[@]}" install -q --no-deps uni2ts==2.0.0 momentfm==0.1.4
