#!/usr/bin/env bash
# A record of how the 2026-12-03b run was finished by hand (its process ids and paths), not a reusable script.
# when OS is done, DB gets both cores: its 1-thread evaluation is stopped and resumed with 2 threads
# (05_eval.py skips the episodes already written; the ones in flight are played again); then the losses
cd /work/main
S=/work/main/runs/s8 PY=.venv/bin/python M=/work/main/runs/s8/train/eta0.2_db/final
export TOKENIZERS_PARALLELISM=false
while pgrep -f "tasks=os --limit" > /dev/null; do sleep 10; done
pkill -f "tasks=db --limit"; while pgrep -f "tasks=db --limit" > /dev/null; do sleep 2; done
echo "[$(date +%T)] DB resumed with 2 threads at $(wc -l < $S/eval/eta0.2_db/db/episodes/db.jsonl) episodes"
OMP_NUM_THREADS=2 $PY 05_eval.py --label=eta0.2_db --model=$M --tasks=db --limit=0 --workers=8 \
  --out_dir=$S/eval/eta0.2_db/db >> $S/logs/eta0.2_db.eval_db.log 2>&1
echo "[$(date +%T)] evaluated eta0.2_db on db"
OMP_NUM_THREADS=2 $PY experiments/heldout_loss.py --model=$M --limit=40 --out=$S/loss/eta0.2_db.json \
  --data=alfworld_valid_seen=$S/heldout/alfworld_valid_seen/alfworld.jsonl,gsm8k_reference=$S/heldout/general/episodes/gsm8k.jsonl,humaneval_reference=$S/heldout/general/episodes/humaneval.jsonl \
  > $S/logs/eta0.2_db.loss.log 2>&1
echo "[$(date +%T)] loss done"
