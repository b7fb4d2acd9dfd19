#!/usr/bin/env bash
# eta0.2_db_2ep on MiniWoB++ (held out, the same 52 tasks, limit and command as the base and eta0.2_db
# in the 2026-12-03b study), run in the next session (2026-12-03, sixth) when it fitted: that session's
# hf agent (decode attention over the whole cache capacity, pre-packed bf16 linears; greedy, bf16 like
# the earlier runs, whose bf16 roundings can differ slightly). Both cores, nothing else running.
#   nohup bash experiments/runs_2026-12-03d/miniwob.sh > runs/s10_miniwob.log 2>&1 &
cd "$(dirname "$0")/../.."
S=${STUDY:-$PWD/runs/s10}
M=$S/train/eta0.2_db_2ep/final
export OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
[ -e $S/eval/eta0.2_db_2ep/miniwob/results.json ] || .venv/bin/python 05_eval.py --label=eta0.2_db_2ep --model=$M \
  --tasks=miniwob --limit=52 --workers=8 --out_dir=$S/eval/eta0.2_db_2ep/miniwob > $S/logs/eta0.2_db_2ep.eval_miniwob.log 2>&1
echo "[$(date +%T)] miniwob done"
