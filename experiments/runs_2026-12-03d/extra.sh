#!/usr/bin/env bash
# eta0.2_db_2ep's held-out losses, on both cores once DB is done (MiniWoB++ did not fit the session); and
# the 2026-12-03b episodes and losses of the base and eta0.2_db copied in, so the report pairs
# eta0.2_db_2ep with them on the same tasks (same conversations, limit and commands as that study).
#   nohup bash experiments/runs_2026-12-03d/extra.sh > runs/s10_extra.log 2>&1 &
cd "$(dirname "$0")/../.."
PY=.venv/bin/python S=${STUDY:-$PWD/runs/s10} PREV=${PREV:-$PWD/runs/s8}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p $S/loss $S/logs $S/eval
for run in base eta0.2_db; do
  [ -e $S/eval/$run ] || cp -r $PREV/eval/$run $S/eval/$run
  [ -e $S/loss/$run.json ] || cp $PREV/loss/$run.json $S/loss/$run.json
done
[ -e $S/heldout ] || cp -r $PREV/heldout $S/heldout
M=$S/train/eta0.2_db_2ep/final
while [ ! -e $S/eval/eta0.2_db_2ep/db/results.json ]; do sleep 30; done
[ -e $S/loss/eta0.2_db_2ep.json ] || OMP_NUM_THREADS=2 $PY experiments/heldout_loss.py --model=$M --limit=40 --out=$S/loss/eta0.2_db_2ep.json \
  --data=alfworld_valid_seen=$S/heldout/alfworld_valid_seen/alfworld.jsonl,gsm8k_reference=$S/heldout/general/episodes/gsm8k.jsonl,humaneval_reference=$S/heldout/general/episodes/humaneval.jsonl \
  > $S/logs/eta0.2_db_2ep.loss.log 2>&1
echo "[$(date +%T)] loss done"
