#!/usr/bin/env bash
# eta0.2_bal's held-out losses, on the core lane A frees (after HumanEval): the same conversations,
# limit and command as the earlier studies (copied from runs/s8, as is the base's loss file).
#   nohup bash experiments/runs_2026-12-03c/losses.sh > runs/s9_loss.log 2>&1 &
cd "$(dirname "$0")/../.."
PY=.venv/bin/python S=${STUDY:-$PWD/runs/s9} PREV=${PREV:-$PWD/runs/s8}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p $S/loss $S/logs
[ -e $S/heldout ] || cp -r $PREV/heldout $S/heldout
[ -e $S/loss/base.json ] || cp $PREV/loss/base.json $S/loss/base.json
while [ ! -e $S/eval/eta0.2_bal/humaneval/results.json ]; do sleep 30; done
$PY experiments/heldout_loss.py --model=$S/train/eta0.2_bal/final --limit=40 --out=$S/loss/eta0.2_bal.json \
  --data=alfworld_valid_seen=$S/heldout/alfworld_valid_seen/alfworld.jsonl,gsm8k_reference=$S/heldout/general/episodes/gsm8k.jsonl,humaneval_reference=$S/heldout/general/episodes/humaneval.jsonl \
  > $S/logs/eta0.2_bal.loss.log 2>&1
echo "[$(date +%T)] loss done"
