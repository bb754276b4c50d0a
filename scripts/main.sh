#!/usr/bin/env bash
# The main job: set everything up, then run msft-train with its default config (the embedded tiny
# MOIRAI pretrained on synthetic series only, ETTh1, H=96: zero_shot vs lora vs full vs msft), offline.
# It prints the comparison table and writes results/main.{md,csv}; extra arguments go to msft-train.
# Running it again runs the job again (overwrite=true replaces runs/main's earlier runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# One torch thread unless told otherwise: on a 2-core machine with other jobs running, two threads per
# process made the main job about 10x slower (7.6 s per training step instead of 0.1 s) in this session.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/msft-train experiment=main overwrite=true "$@"
