#!/usr/bin/env bash
# This session's driver: the trainings were started by hand (run.sh's train commands); each
# branch's evaluations start as soon as its training is done; run.sh's evaluate, the same commands.
cd /work/main
S=runs/s3 PY=.venv/bin/python
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
evaluate() { [ -e $S/eval/$1/$3/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=$3 --workers=8 \
    --out_dir=$S/eval/$1/$3 > $S/logs/$1.eval_$3.log 2>&1; }
done_training() { while [ ! -e $S/train/$1/final/config.json ]; do sleep 20; done; }
{ done_training replay_eta1.0; evaluate replay_eta1.0 $S/train/replay_eta1.0/final alfworld
  evaluate eta0.2 $S/train/eta0.2/final db; evaluate eta1.0 $S/train/eta1.0/final db; } &
{ done_training eta1.0_db; evaluate eta1.0_db $S/train/eta1.0_db/final db
  evaluate eta1.0_db $S/train/eta1.0_db/final alfworld; } &
wait
evaluate base "" db
echo "driver_b done $(date)"
