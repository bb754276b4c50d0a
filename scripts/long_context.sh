#!/usr/bin/env bash
# Does longer coarse history help? (issue 30) ETTh1, H=96, the embedded tiny MOIRAI, seeds 0-2: msft
# [1,2,4] as today (every scale sees the 512-step context) against context_lengths=equal_tokens
# (scale s sees 512*s steps: every scale has scale 1's 16 tokens; windows borrow the longer history
# from the splits before). Both at the learning rate validation selected for msft in the evidence
# suite (lr_scale=1, results/evidence/lsf.csv), not re-tuned for equal_tokens. Full test split.
# Resumable (skip_finished); the table (validation and test, mean ± std over seeds) is
# results/long_context/long_context.{md,csv}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
common=(experiment=long_context data=ETTh1 seed=0,1,2 lr_scale=1 skip_finished=true results_dir=results/long_context)
.venv/bin/msft-train -m "${common[@]}" method=msft
.venv/bin/msft-train -m "${common[@]}" method=msft method.name=msft_equal_tokens \
  +method.options.context_lengths=equal_tokens
.venv/bin/msft-results runs/long_context --name long_context --out results/long_context --select \
  --trained-by "bash scripts/long_context.sh"
