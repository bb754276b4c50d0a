#!/usr/bin/env bash
# Do joint variates help? (issue 28) ETTh1, ETTh2 and Weather at H=96 on the embedded tiny MOIRAI:
# (each data config's horizon) msft vs LoRA vs full finetuning, each channel-independent (mode S: every variate its own series)
# and with joint variates (mode M: data.mode=M and every wrap of the run built with mode="M", all
# variates of a window in one token sequence per scale). Rows are named <method>_<mode>.
#   1. seed 0 trains every (dataset, method, mode) at lr_scale 0.3, 1 and 3 (test deferred); while the
#      validation choice is an edge of what was tried, one more lr_scale a factor 3 beyond it, at most 2
#      extensions (msft_runner.multivariate.next_scale: the evidence suite's rule on this smaller grid);
#   2. the lr_scale with the best seed-0 validation score is the choice; seeds 1 and 2 train at it;
#   3. after each dataset, msft-evaluate --select tests the run validation selected per (method, seed)
#      on every TEST_STRIDES-th test window (default: Weather every 4th, off-protocol because its
#      stride-1 test costs ~1000 s per run on 2 CPU cores; every other dataset every window, the
#      protocol); msft-results --select writes the table results/multivariate/lsf.{md,csv} (validation
#      and test, mean +- std over seeds), and python -m msft_runner.multivariate notes appends the
#      search and the paired M-vs-S comparison.
# The six (method, mode) searches of a dataset run JOBS at a time (default 2; each its own process).
# Resumable: every stage skips finished runs (skip_finished) and runs already tested.
# TABLE_ONLY=1 writes the table from whatever finished (no training, no testing).
#
#   bash scripts/multivariate_lsf.sh                      # the table (hours on a CPU)
#   DATASETS=ETTh1 RUNS=runs/smoke OUT=runs/smoke/table bash scripts/multivariate_lsf.sh trainer=tiny data.context_length=128 \
#     data.horizon=16 data.val_stride=100 data.test_stride=400   # a smoke run: extra overrides go to every run
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RUNS=${RUNS:-runs}
OUT=${OUT:-results/multivariate}
EXPERIMENT=multivariate_lsf
ALL_DATASETS=(ETTh1 ETTh2 Weather)  # the table's datasets
read -ra DATASETS <<<"${DATASETS:-${ALL_DATASETS[*]}}"  # DATASETS="ETTh1" for a smoke run
read -ra METHODS <<<"${METHODS:-msft lora full}"
TEST_STRIDES=${TEST_STRIDES:-Weather=4}  # DATASET=N,...: test every N-th window of DATASET (others: every window)
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

lr_rule() {  # lr_rule next|chosen DATASET METHOD_NAME: the next lr_scale to train / seed 0's choice
  .venv/bin/python -m msft_runner.multivariate "$1" "$ROOT" "$2" "$3"
}

test_stride() {  # the test stride of DATASET in TEST_STRIDES (1: every window)
  local item
  for item in ${TEST_STRIDES//,/ }; do
    if [[ ${item%%=*} == "$1" ]]; then echo "${item#*=}"; return; fi
  done
  echo 1
}

weights=backbones/moirai/tiny_moirai/model.safetensors
if [[ ${TABLE_ONLY:-0} != 1 ]]; then
  sha=$(sha256sum "$weights" | cut -c1-12)
  echo "[$(date -u +%H:%M:%S)] backbone weights sha256 $sha" | tee -a "$ROOT/logs/weights.log"
fi

search() {  # search DATASET METHOD MODE: seed 0's grid and extensions, then seeds 1, 2 at the choice
  echo "[$(date -u +%H:%M:%S)] $1 $2 mode $3: seed 0, lr_scale 0.3,1,3"
  train "$1" "$2" "$3" 0 0.3,1,3
  local lr
  while lr=$(lr_rule next "$1" "$2_$3") && [[ -n $lr ]]; do
    echo "[$(date -u +%H:%M:%S)] $1 $2 mode $3: seed 0 chose an edge; extending to lr_scale $lr"
    train "$1" "$2" "$3" 0 "$lr"
  done
  lr=$(lr_rule chosen "$1" "$2_$3")
  echo "[$(date -u +%H:%M:%S)] $1 $2 mode $3: seeds 1,2 at the chosen lr_scale $lr"
  train "$1" "$2" "$3" 1,2 "$lr"
}

wait_one() {  # wait for one background search; a failed one stops the others and the script
  if ! wait -n; then
    echo "a search failed; stopping the others" >&2
    kill $(jobs -p) 2>/dev/null || true
    wait || true
    exit 1
  fi
}

JOBS=${JOBS:-2}  # (method, mode) searches that train at once, each a process on one thread
for dataset in "${DATASETS[@]}"; do
  [[ ${TABLE_ONLY:-0} == 1 ]] && break
  for method in "${METHODS[@]}"; do
    for mode in "${MODES[@]}"; do
      while (($(jobs -pr | wc -l) >= JOBS)); do wait_one; done
      search "$dataset" "$method" "$mode" &
    done
  done
  while (($(jobs -pr | wc -l) > 0)); do wait_one; done
  stride=$(test_stride "$dataset")
  echo "[$(date -u +%H:%M:%S)] $dataset: testing the selected runs on every ${stride}-th test window"
  .venv/bin/msft-evaluate "$ROOT/${dataset}"_H* --select --test-stride "$stride" >>"$ROOT/logs/${dataset}_evaluate.log" 2>&1 ||
    { echo "failed: msft-evaluate $dataset (see $ROOT/logs/${dataset}_evaluate.log)" >&2; exit 1; }
done

# The table: the test windows per dataset, the weights' hash (another session may rewrite the embedded
# weights; every run of the table must have used one version), then the appended search and M vs S.
# KEEP (default: the committed $OUT/lsf.csv): its rows whose runs are gone from $RUNS stay in the table,
# so a dataset added later (DATASETS=Weather) joins the datasets trained in an earlier session.
KEEP=${KEEP-$OUT/lsf.csv}
[[ -f $KEEP ]] || KEEP=""
keep=()
[[ -n $KEEP ]] && keep=(--keep "$KEEP")
windows=""
for d in "${ALL_DATASETS[@]}"; do
  compgen -G "$ROOT/${d}_H*" >/dev/null || { [[ -n $KEEP ]] && grep -q "^[^,]*,$d," "$KEEP"; } || continue
  k=$(test_stride "$d")
  if [[ $k == 1 ]]; then windows+="$d every window (the protocol); "; else windows+="$d every ${k}-th window (off-protocol: a stride-1 test costs ~1000 s per run here); "; fi
done
hashes=$({
  cut -d' ' -f5 "$ROOT/logs/weights.log" 2>/dev/null
  # the kept rows' weights, as the earlier table's note names them
  [[ -n $KEEP ]] && sed -n 's/.*model.safetensors when the driver started): \([0-9a-f ]*\)\..*/\1/p' "${KEEP%.csv}.md" | tr ' ' '\n'
} | grep . | sort -u | tr '\n' ' ' || true)
.venv/bin/msft-results "$RUNS/$EXPERIMENT" --name lsf --out "$OUT" --select --test-stride "$TEST_STRIDES" "${keep[@]}" \
  --trained-by "bash scripts/multivariate_lsf.sh" \
  --note "Tiny MOIRAI, H=96. Mode S: channel independence; mode M: all variates of a window attend to each other \
(data.mode=M, every wrap with mode=\"M\"). lr_scale 0.3, 1, 3 on seed 0 (the evidence suite's 0.1-10 grid is too \
expensive on the shared 2-CPU machine this ran on), extended 3x beyond an edge choice at most twice, chosen on \
validation; seeds 1, 2 at the choice; only the runs validation selected are tested. Test windows: ${windows%; }. \
Backbone weights (sha256 prefix of backbones/moirai/tiny_moirai/model.safetensors when the driver started): ${hashes% }.\
${MISSING:+ Missing: $MISSING}${EXTRA_NOTE:+ $EXTRA_NOTE}" >/dev/null  # MISSING, EXTRA_NOTE: words for the note
.venv/bin/python -m msft_runner.multivariate notes "$RUNS/$EXPERIMENT" --test-stride "$TEST_STRIDES" "${keep[@]}" >>"$OUT/lsf.md"
echo "[$(date -u +%H:%M:%S)] wrote $OUT/lsf.md and $OUT/lsf.csv"
