#!/usr/bin/env bash
# replaces driver_b (for time): the DB arm's ALFWorld eval takes the core the replay eval frees;
# the s3 eta0.2/eta1.0 DB evals are dropped (eta0.2 stopped at 90/300, all failed)
cd /work/main
S=runs/s3 PY=.venv/bin/python
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
while [ ! -e $S/eval/replay_eta1.0/alfworld/results.json ]; do sleep 15; done
$PY 05_eval.py --label=eta1.0_db --model=$S/train/eta1.0_db/final --tasks=alfworld --workers=8 \
  --out_dir=$S/eval/eta1.0_db/alfworld > $S/logs/eta1.0_db.eval_alfworld.log 2>&1
echo "driver_c done $(date)"
