#!/usr/bin/env bash
# Finishes the study that runs/s3/run.sh (experiments/reproduce.sh, JOBS=3) started: two of its three
# trainings were OOM-killed (DeepSpeed leaked 8 GB of /dev/shm buffers; see 04_train.py's cleanup).
# Same settings; at most two trainings at a time; each evaluation part in its own folder.
set -euo pipefail
cd /work/study
PY=.venv/bin/python S=/work/main/runs/s3
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
train() { [ -e $S/train/$1/final/config.json ] || $PY 04_train.py --preset=cpu --model= --data=$S/mix/$1/train.jsonl \
  --val_data=$S/mix/$1/val.jsonl --out_dir=$S/train/$1 --batch_size=1 --max_steps=120 --lr=2e-4 --eval_interval=120 \
  --save_interval=100000 > $S/logs/$1.train.log 2>&1; }
evaluate() { [ -e $S/eval/$1/$3/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=$3 --workers=8 \
  --out_dir=$S/eval/$1/$3 > $S/logs/$1.eval_$3.log 2>&1; }
train eta0.2 &
while pgrep -f "mix/eta1.0/train.jsonl" > /dev/null; do sleep 10; done
train replay_eta1.0 &
evaluate base "" alfworld
evaluate eta1.0 $S/train/eta1.0/final alfworld
wait %1 || true
evaluate eta0.2 $S/train/eta0.2/final alfworld
wait
evaluate replay_eta1.0 $S/train/replay_eta1.0/final alfworld &
evaluate base "" db
evaluate eta1.0 $S/train/eta1.0/final db
evaluate eta0.2 $S/train/eta0.2/final db
wait
echo "resume done"
