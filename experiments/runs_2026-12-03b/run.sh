#!/usr/bin/env bash
# Session 2026-12-03b: the paper's recipe (eta 0.2) on the pool that taught eta1.0_db the DB format, and
# the first held-out task at n >= 50 (MiniWoB++).
#   - eta0.2_db: the explorer's 300 ALFWorld train games, the OS/DB dev replays and 500 DB tasks written
#     from the dev tables (00_instruct.py --agent=template), collected by the explorer: eta1.0_db's pool,
#     mixed at eta 0.2 (600 samples, seed 1234), the sweep's compute (120 steps x one 2048-token row,
#     lr 2e-4); evaluated on the full std sets (ALFWorld 50, DB 300, OS 144), GSM8K 200, HumanEval 164
#   - MiniWoB++ (held out: no run trained on web tasks), 52 of its 260 tasks spread over the set, base
#     vs eta0.2_db
# The raw ALFWorld/OS/DB collections are runs/s6/raw (the 2026-12-02 recipe, made again on 2026-12-03).
# Two lanes, one core each (a training holds 7-8 GB). Every step resumes. From the repository root:
#   nohup bash experiments/runs_2026-12-03b/run.sh > runs/s8.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python S=${STUDY:-$PWD/runs/s8} RAW=${RAW:-$PWD/runs/s6/raw}
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
  [ -e $S/instruct/db_tasks.jsonl ] || $PY 00_instruct.py --env=db --agent=template --n=500 --out_dir=$S/instruct --workers=2
  $PY 01_collect.py --env=db --tasks=$S/instruct/db_tasks.jsonl --agent=explorer --out_dir=$S/raw_derived --workers=2
  $PY 02_filter.py --inputs="$S/raw/*.jsonl,$S/raw_derived/db.jsonl" --out_dir=$S/filtered_db --seq_len=2048 --model=
  [ -e $S/mix/eta0.2_db/train.jsonl ] || $PY 03_mix.py --agent_data=$S/filtered_db/agent.jsonl --eta=0.2 --total=600 \
    --out_dir=$S/mix/eta0.2_db
}
train() {  # name mix_dir: the sweep's recipe
  [ -e $S/train/$1/final/config.json ] || $PY 04_train.py --preset=cpu --model= --data=$2/train.jsonl \
    --val_data=$2/val.jsonl --out_dir=$S/train/$1 --batch_size=1 --max_steps=120 --lr=2e-4 --eval_interval=120 \
    --save_interval=100000 > $S/logs/$1.train.log 2>&1
  say "trained $1"
}
M=$S/train/eta0.2_db/final
data > $S/logs/data.log 2>&1; say "data made"
lane_a() { train eta0.2_db $S/mix/eta0.2_db; evaluate eta0.2_db $M alfworld; evaluate eta0.2_db $M db
           evaluate eta0.2_db $M os; }
lane_b() { evaluate base "" miniwob 52
           while [ ! -e $M/config.json ]; do sleep 30; done
           evaluate eta0.2_db $M miniwob 52; evaluate eta0.2_db $M gsm8k 200; evaluate eta0.2_db $M humaneval; }
lane_a & lane_b & wait
say "done"
