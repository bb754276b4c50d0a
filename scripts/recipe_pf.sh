#!/usr/bin/env bash
# Which MSFT recipe for the PF protocol (issue 18)? Validation only: seed 0, every candidate at
# lr_scale 0.3 / 1 / 3 on Jena weather (H=144, the validation blocks before the 7 test blocks), test
# deferred, so the choice reads no test score. Candidates: msft (frozen backbone, fused-MSE fusion),
# + freeze_ffn or every backbone parameter, each fusion fitted by the squared error of the mean or by
# the CRPS of the mixture (fusion_objective=fused_crps, sample_fusion=mixture); full finetuning is the
# reference. Resumable. Writes results/recipe/pf_recipe.{md,csv}.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
if [ -z "${MSFT_DATA_DIR:-}" ] && [ -d ../shared/data ]; then  # Jena weather is weather/weather.csv there
    export MSFT_DATA_DIR="$(cd ../shared/data && pwd)"
fi
methods=full,msft,msft_freeze_ffn,msft_full_backbone,msft_crps_fusion,msft_full_backbone_crps,msft_full_backbone_crps_fast_fusion
.venv/bin/msft-train -m experiment=recipe_pf data=pf_jena_weather "method=$methods" seed=0 lr_scale=0.3,1,3 \
  defer_test=true skip_finished=true select=true plots=false results_dir=runs/recipe_pf/tables \
  'hydra.sweep.subdir=${data.name}_H${data.horizon}/${hydra:runtime.choices.backbone}/${method.name}/lr${lr_scale}/seed${seed}'
.venv/bin/msft-results runs/recipe_pf --select --name pf_recipe --out results/recipe \
  --trained-by "bash scripts/recipe_pf.sh" \
  --note "Validation only (seed 0, lr_scale 0.3 / 1 / 3 per candidate): the PF recipe is chosen on the val score (CRPS of the fused forecast on the validation blocks); no candidate is tested here."
