#!/usr/bin/env bash
# MiniWoB++ (held out) for eta0.2_bal on the core the losses free: the 52 episodes of runs_2026-12-03b
# (26 task types x 2 seeds); the base's 52 are that study's (carried through --previous).
#   nohup bash experiments/runs_2026-12-03c/miniwob.sh > runs/s9_miniwob.log 2>&1 &
cd "$(dirname "$0")/../.."
PY=.venv/bin/python S=${STUDY:-$PWD/runs/s9}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
while [ ! -e $S/loss/eta0.2_bal.json ]; do sleep 30; done
$PY 05_eval.py --label=eta0.2_bal --model=$S/train/eta0.2_bal/final --tasks=miniwob --limit=52 --workers=8 \
  --out_dir=$S/eval/eta0.2_bal/miniwob > $S/logs/eta0.2_bal.eval_miniwob.log 2>&1
echo "[$(date +%T)] evaluated eta0.2_bal on miniwob"
