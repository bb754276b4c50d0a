#!/usr/bin/env bash
# Do joint variates help? (issue 28) ETTh1, ETTh2 and Weather at H=96 on the embedded tiny MOIRAI:
# (each data config's horizon) msft vs LoRA vs full finetuning, each channel-independent (mode S: every variate its own series)
# and with joint variates (mode M: data.mode=M and every wrap of the run built with mode="M", all
# variates of a window in one token sequence per scale). Rows are named <method>_<mode>.
#   1. seed 0 trains every (dataset, method, mode) at lr_scale 0.3, 1 and 3 (test deferred);
#   2. the lr_scale with the best seed-0 validation score is the choice; seeds 1 and 2 train at it;
#   3. msft-evaluate --select tests the run validation selected per (method, dataset, seed) on every
#      test window (stride 1, the protocol); msft-results --select writes the table
#      results/multivariate/lsf.{md,csv} (validation and test, mean ± std over seeds).
# Resumable: every stage skips finished runs (skip_finished) and runs already tested.
#
#   bash scripts/multivariate_lsf.sh                      # the table (hours on a CPU)
#   DATASETS=ETTh1 RUNS=runs/smoke OUT=runs/smoke/table bash scripts/multivariate_lsf.sh trainer=tiny data.context_length=64 \
#     data.horizon=16 data.val_stride=100 data.test_stride=400   # a smoke run: extra overrides go to every run
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RUNS=${RUNS:-runs}
OUT=${OUT:-results/multivariate}
EXPERIMENT=multivariate_lsf
read -ra DATASETS <<<"${DATASETS:-ETTh1 ETTh2 Weather}"  # DATASETS="ETTh1" for a smoke run
read -ra METHODS <<<"${METHODS:-msft lora full}"
MODES=(S M)
ROOT="$RUNS/$EXPERIMENT"
mkdir -p "$ROOT/logs"
common=(experiment=$EXPERIMENT runs_dir="$RUNS" backbone=tiny_moirai defer_test=true
  skip_finished=true select=true plots=false results_dir="$ROOT/tables"
  'hydra.sweep.subdir=${data.name}_H${data.horizon}/${hydra:runtime.choices.backbone}/${method.name}/lr${lr_scale}/seed${seed}'
  "$@")

mode_overrides() {  # the overrides of mode $1 (mode M: the windows and every wrap of the run)
  if [[ $1 == M ]]; then echo "data.mode=M +backbone.wrap_options.mode=M"; else echo "data.mode=S"; fi
}

train() {  # train DATASET METHOD MODE SEEDS LR_SCALES
  local log="$ROOT/logs/$1_$2_$3.log"
  # shellcheck disable=SC2046  # mode_overrides is a list of words
  .venv/bin/msft-train -m "${common[@]}" data="$1" method="$2" method.name="$2_$3" seed="$4" lr_scale="$5" \
    $(mode_overrides "$3") >>"$log" 2>&1 || { echo "failed: $1 $2 $3 seeds $4 lr_scale $5 (see $log)" >&2; exit 1; }
}

chosen_lr() {  # the lr_scale of the best seed-0 validation score of DATASET METHOD_NAME under $ROOT
  .venv/bin/python - "$ROOT" "$1" "$2" <<'EOF'
import sys
from pathlib import Path

from msft_runner.results import collect

root, dataset, method = sys.argv[1:]
runs = [
    r
    for r in collect([Path(root)])
    if r.get("dataset") == dataset and r.get("method") == method and r.get("seed") == 0
    and r.get("status") == "ok" and r.get("val_score") is not None
]
if not runs:
    sys.exit(f"no finished seed-0 run of {method} on {dataset} under {root}")
best = min(runs, key=lambda r: r["val_score"])
print(Path(best["run_dir"]).parent.name.removeprefix("lr"))
EOF
}

for dataset in "${DATASETS[@]}"; do
  for method in "${METHODS[@]}"; do
    for mode in "${MODES[@]}"; do
      echo "[$(date -u +%H:%M:%S)] $dataset $method mode $mode: seed 0, lr_scale 0.3,1,3"
      train "$dataset" "$method" "$mode" 0 0.3,1,3
      lr=$(chosen_lr "$dataset" "${method}_$mode")
      echo "[$(date -u +%H:%M:%S)] $dataset $method mode $mode: seeds 1,2 at the chosen lr_scale $lr"
      train "$dataset" "$method" "$mode" 1,2 "$lr"
    done
  done
done
.venv/bin/msft-evaluate "$ROOT" --select
.venv/bin/msft-results "$ROOT" --name lsf --out "$OUT" --select --trained-by "bash scripts/multivariate_lsf.sh" \
  --note "Tiny MOIRAI, H=96. Mode S: channel independence; mode M: all variates of a window attend to each other \
(data.mode=M, every wrap with mode=\"M\"). lr_scale 0.3, 1, 3 on seed 0, chosen on validation; seeds 1, 2 at the \
choice; tested on every test window of the runs validation selected."
