#!/usr/bin/env bash
# Second resume (02:28): the replay training ran at ~55 s/step beside the others and could not end
# in this session, so it was stopped (the explorer-vs-replay comparison is left); the evaluations
# run two at a time as soon as their model exists.
set -uo pipefail
cd /work/study
PY=.venv/bin/python S=/work/main/runs/s3
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
evaluate() { [ -e $S/eval/$1/$3/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=$3 --workers=8 \
  --out_dir=$S/eval/$1/$3 > $S/logs/$1.eval_$3.log 2>&1; }
while pgrep -f "label=base --model= --tasks=alfworld" > /dev/null; do sleep 10; done
evaluate eta1.0 $S/train/eta1.0/final alfworld &
while [ ! -e $S/train/eta0.2/final/config.json ]; do sleep 10; done
evaluate eta0.2 $S/train/eta0.2/final alfworld &
evaluate base "" db
wait
evaluate eta1.0 $S/train/eta1.0/final db &
evaluate eta0.2 $S/train/eta0.2/final db
wait
echo "resume2 done"
