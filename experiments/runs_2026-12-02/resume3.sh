#!/usr/bin/env bash
# Third resume (02:39): ALFWorld first for both tuned runs; DB only if time is left (a spread subset).
set -uo pipefail
cd /work/study
PY=.venv/bin/python S=/work/main/runs/s3
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
evaluate() { [ -e $S/eval/$1/$3/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=$3 --workers=8 \
  --out_dir=$S/eval/$1/$3 ${4:-} > $S/logs/$1.eval_$3.log 2>&1; }
while [ ! -e $S/train/eta0.2/final/config.json ]; do sleep 10; done
evaluate eta0.2 $S/train/eta0.2/final alfworld
echo "resume3 done"
