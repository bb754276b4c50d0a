#!/usr/bin/env bash
# The main job: set everything up, then run msft-train with its default config (the embedded tiny
# MOIRAI pretrained on synthetic series only, ETTh1, H=96: zero_shot vs lora vs full vs msft), offline.
# It prints the comparison table and writes results/main.{md,csv}; extra arguments go to msft-train.
# Running it again runs the job again (overwrite=true replaces runs/main's earlier runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/msft-train experiment=main overwrite=true "$@"
