#!/usr/bin/env bash
# A fair learning-rate sweep (issue 14 item 6). Every method gets the same grid, lr_scale 0.3 / 1 / 3
# (every learning rate of the run times that factor, around the data config's rates), and the same
# step budget (the backbone x dataset preset's). Each run early-stops and keeps its checkpoint on the
# fused validation score; per (method, dataset, seed) the run with the best validation score is
# selected, and results/recipe/lr_sweep.{md,csv} list the test scores at the selected settings with
# the selected lr_scale per seed. Resumable: finished runs are skipped, so rerunning the same command
# continues a stopped sweep. Extra arguments go to msft-train (e.g. data=ETTh1,ETTm1 backbone=...).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/msft-train -m experiment=lr_sweep seed=0,1,2 method=lora,full,msft_single_scale,msft \
  lr_scale=0.3,1,3 skip_finished=true select=true results_dir=results/recipe \
  'hydra.sweep.subdir=${data.name}_H${data.horizon}/${hydra:runtime.choices.backbone}/${method.name}/lr${lr_scale}/seed${seed}' \
  "$@"
