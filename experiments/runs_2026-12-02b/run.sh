#!/usr/bin/env bash
# Session 2026-12-02b: the second held-in task (DB) and the explorer-vs-replay arm, on top of the
# study in runs/s3 (experiments/runs_2026-12-02/run.sh made its data, mixes and the eta0.2/eta1.0 runs).
# Run from the repository root; every step resumes (05_eval appends episodes, 01_collect too).
set -uo pipefail
PY=.venv/bin/python S=${STUDY:-runs/s3}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
train() {  # name mix_dir: the study's recipe, the same compute as eta0.2 / eta1.0
  [ -e $S/train/$1/final/config.json ] || $PY 04_train.py --preset=cpu --model= --data=$2/train.jsonl \
    --val_data=$2/val.jsonl --out_dir=$S/train/$1 --batch_size=1 --max_steps=120 --lr=2e-4 --eval_interval=120 \
    --save_interval=100000 > $S/logs/$1.train.log 2>&1
}
evaluate() {  # run model_dir task
  [ -e $S/eval/$1/$3/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=$3 --workers=8 \
    --out_dir=$S/eval/$1/$3 > $S/logs/$1.eval_$3.log 2>&1
}
if [ "${1:-}" = data ]; then
  # DB tasks written from the dev tables (no LLM), collected by the explorer, filtered with the
  # study's raw data, mixed at eta 1.0 (600 samples, like eta1.0)
  $PY 00_instruct.py --env=db --agent=template --n=500 --out_dir=$S/instruct --workers=2
  $PY 01_collect.py --env=db --tasks=$S/instruct/db_tasks.jsonl --agent=explorer --out_dir=$S/raw_derived --workers=2
  $PY 02_filter.py --inputs="$S/raw/*.jsonl,$S/raw_derived/db.jsonl" --out_dir=$S/filtered_db --seq_len=2048 --model=
  $PY 03_mix.py --agent_data=$S/filtered_db/agent.jsonl --eta=1.0 --total=600 --out_dir=$S/mix/eta1.0_db
  exit
fi
# two at a time (a training holds 7-8 GB; the machine has 2 cores)
{ train replay_eta1.0 $S/mix/replay_eta1.0; evaluate replay_eta1.0 $S/train/replay_eta1.0/final alfworld; } &
{ train eta1.0_db $S/mix/eta1.0_db; evaluate eta1.0_db $S/train/eta1.0_db/final db
  evaluate eta1.0_db $S/train/eta1.0_db/final alfworld; } &
wait
evaluate base "" db
evaluate eta0.2 $S/train/eta0.2/final db   # the study's eta 0.2 model (only the 60 dev DB tasks)
# (not run, for time: eta1.0 on DB)
$PY experiments/write_results.py --study=$S --command="bash experiments/runs_2026-12-02/run.sh; bash experiments/runs_2026-12-02b/run.sh"
