#!/usr/bin/env bash
# The base and eta0.2_db_2ep on ScienceWorld (held out, test split, --limit=50), two lanes of one core
# each, in the session after the study (2026-12-03, sixth) with that session's hf agent (like miniwob.sh).
# Resumable: a rerun plays only the episodes not yet written.
#   nohup bash experiments/runs_2026-12-03d/sciworld.sh > runs/s10_sciworld.log 2>&1 &
cd "$(dirname "$0")/../.."
S=${STUDY:-$PWD/runs/s10}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
evaluate() {  # label model_dir
  [ -e $S/eval/$1/sciworld/results.json ] || .venv/bin/python 05_eval.py --label=$1 --model="$2" --tasks=sciworld \
    --limit=50 --workers=8 --out_dir=$S/eval/$1/sciworld > $S/logs/$1.eval_sciworld.log 2>&1
  echo "[$(date +%T)] $1 sciworld done"
}
evaluate base "" & evaluate eta0.2_db_2ep $S/train/eta0.2_db_2ep/final & wait
