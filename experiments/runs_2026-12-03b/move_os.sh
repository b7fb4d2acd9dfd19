#!/usr/bin/env bash
# A record of how the 2026-12-03b run was finished by hand (its process ids and paths), not a reusable script.
# move OS to the lane that finished first: when lane B (pid 15521) ends, run OS there; once lane A
# (pid 15520) has started its DB evaluation, stop lane A's shell so it does not start OS too
cd /work/main
S=/work/main/runs/s8 PY=.venv/bin/python M=/work/main/runs/s8/train/eta0.2_db/final
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
while kill -0 15521 2>/dev/null; do sleep 10; done
echo "[$(date +%T)] lane B done; OS starts"
$PY 05_eval.py --label=eta0.2_db --model=$M --tasks=os --limit=0 --workers=8 --out_dir=$S/eval/eta0.2_db/os > $S/logs/eta0.2_db.eval_os.log 2>&1 &
os=$!
until pgrep -f "tasks=db --limit" > /dev/null; do sleep 5; done
kill 15520; echo "[$(date +%T)] lane A's shell stopped (its DB evaluation goes on)"
wait $os; echo "[$(date +%T)] evaluated eta0.2_db on os"
