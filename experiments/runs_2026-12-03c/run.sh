#!/usr/bin/env bash
# Session 2026-12-03c: the paper's recipe (eta 0.2) on a pool balanced between ALFWorld and DB.
#   eta0.2 (2026-12-03) trained ~110 ALFWorld trajectories and beat the base on ALFWorld only;
#   eta0.2_db (2026-12-03b) drew 80 DB and 38 ALFWorld trajectories from a pool of 497 DB / 233 ALFWorld
#   and beat the base on DB only. eta0.2_bal keeps everything else of eta0.2_db (raw collections, the
#   explorer, 600 samples at eta 0.2, seed 1234, 120 steps x one 2048-token row, lr 2e-4) and collects
#   only 180 of the 454 template DB tasks (01_collect.py --limit: spread over the list, fixed seed), so
#   the DB share of the pool is about that of ALFWorld.
#   Evaluated on ALFWorld std 50, DB std 300, GSM8K 200, HumanEval 164, then OS std 144.
# Inputs from the earlier studies on this machine: runs/s6/raw (the raw ALFWorld/OS/DB collections) and
# runs/s8/instruct/db_tasks.jsonl (00_instruct.py --env=db --agent=template --n=500, as in runs_2026-12-03b).
# Training uses both cores (nothing else runs then); the evaluations run in two lanes of one core each.
# Every step resumes. From the repository root:
#   nohup bash experiments/runs_2026-12-03c/run.sh > runs/s9.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python S=${STUDY:-$PWD/runs/s9} RAW=${RAW:-$PWD/runs/s6/raw}
DB_TASKS=${DB_TASKS:-$PWD/runs/s8/instruct/db_tasks.jsonl} N_DB=${N_DB:-180}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p $S/logs
say() { echo "[$(date +%H:%M:%S)] $*"; }
evaluate() {  # run model_dir task [limit]
  [ -e $S/eval/$1/$3/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=$3 --limit=${4:-0} \
    --workers=8 --out_dir=$S/eval/$1/$3 > $S/logs/$1.eval_$3.log 2>&1
  say "evaluated $1 on $3"
}
data() {
  [ -e $S/raw ] || cp -r $RAW $S/raw
  $PY 01_collect.py --env=db --tasks=$DB_TASKS --limit=$N_DB --agent=explorer --out_dir=$S/raw_derived --workers=2
  $PY 02_filter.py --inputs="$S/raw/*.jsonl,$S/raw_derived/db.jsonl" --out_dir=$S/filtered_bal --seq_len=2048 --model=
  [ -e $S/mix/eta0.2_bal/train.jsonl ] || $PY 03_mix.py --agent_data=$S/filtered_bal/agent.jsonl --eta=0.2 --total=600 \
    --out_dir=$S/mix/eta0.2_bal
}
train() {  # name mix_dir: the sweep's recipe, on both cores
  [ -e $S/train/$1/final/config.json ] || OMP_NUM_THREADS=2 $PY 04_train.py --preset=cpu --model= \
    --data=$2/train.jsonl --val_data=$2/val.jsonl --out_dir=$S/train/$1 --batch_size=1 --max_steps=120 --lr=2e-4 \
    --eval_interval=120 --save_interval=100000 > $S/logs/$1.train.log 2>&1
  say "trained $1"
}
M=$S/train/eta0.2_bal/final
data > $S/logs/data.log 2>&1; say "data made"
train eta0.2_bal $S/mix/eta0.2_bal
lane_a() { evaluate eta0.2_bal $M alfworld; evaluate eta0.2_bal $M gsm8k 200; evaluate eta0.2_bal $M humaneval; }
lane_b() { evaluate eta0.2_bal $M db; evaluate eta0.2_bal $M os; }
lane_a & lane_b & wait
say "done"
