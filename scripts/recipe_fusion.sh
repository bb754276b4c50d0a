#!/usr/bin/env bash
# Which fusion for MSFT (issue 14 item 4): the embedded tiny MOIRAI, the main job's budget
# (configs/preset/tiny_moirai_*), ETTh1 / ETTh2 / ETTm1, 3 seeds, four fusions:
#   msft_published_fusion the published objective sum_s w_s * loss_s, uniform start (fusion_prior 0)
#   msft_authors_fusion   the published objective with the authors' prior and scale-weight lr (data.msft_recipe)
#   msft_fused_fusion     fusion_objective=fused: the logits fitted to the fused forecast (msft's default since)
#   msft_uniform_fusion   fixed uniform weights
# Every run early-stops and keeps its checkpoint on the fused validation MSE; the table reports
# validation and test (every val_stride-th test window: 8 on ETTh, 32 on ETTm1) as mean ± std over
# seeds and is written to results/recipe/fusion.{md,csv}. Resumable: finished runs are skipped, so
# rerunning the same command continues an interrupted comparison. Extra arguments go to msft-train.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/msft-train -m experiment=fusion seed=0,1,2 data=ETTh1,ETTh2,ETTm1 \
  method=msft_published_fusion,msft_authors_fusion,msft_fused_fusion,msft_uniform_fusion \
  'data.test_stride=${data.val_stride}' skip_finished=true select=true results_dir=results/recipe "$@"
