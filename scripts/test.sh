#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the default test suite (slow/GPU/network tests excluded).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Real benchmark data for the data tests: ../shared/data beside the checkout unless told otherwise.
if [ -z "${MSFT_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
    export MSFT_DATA_DIR="$(cd ../shared/data && pwd)"
fi
exec .venv/bin/python -m pytest -q "$@"
