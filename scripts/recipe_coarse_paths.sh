#!/usr/bin/env bash
# How should coarse scales reach the original resolution (issue 27, item 2)? The embedded tiny MOIRAI,
# the main job's budget, ETTh1 / ETTh2 / ETTm1, 3 seeds, LSF protocol:
#   msft_repeat_paths     coarse_paths=repeat: each coarse step repeated over its block (published; msft's
#                         default when these runs were made, as method=msft, relabelled since)
#   msft_residual_paths   coarse_paths=residual: plus scale 1's within-block deviation
# Both train and select with the fused validation MSE (the up-sampling is part of the fused forecast).
# Validation decides; test on every val_stride-th test window (8 on ETTh, 32 on ETTm1; off-protocol),
# as scripts/recipe_fusion.sh. Resumable (skip_finished). Table: results/recipe/coarse_paths.{md,csv}.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
if [ -z "${MSFT_DATA_DIR:-}" ] && [ -d ../shared/data ]; then  # ETTh2 and ETTm1 are not bundled
    export MSFT_DATA_DIR="$(cd ../shared/data && pwd)"
fi
.venv/bin/msft-train -m experiment=coarse_paths seed=0,1,2 data=ETTh1,ETTh2,ETTm1 \
  method=msft_repeat_paths,msft_residual_paths \
  'data.test_stride=${data.val_stride}' skip_finished=true select=true plots=false results_dir=results/recipe "$@"
