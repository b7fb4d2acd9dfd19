#!/usr/bin/env bash
# The second half of the filtered-vs-unfiltered comparison, on the committed samples of
# self_teacher.sh (self_samples/attempt{1,2}/alfworld.jsonl: the eta 1.0 teacher at T = 0.7, seeds 1
# and 2, 40 ALFWorld train games each): no teacher, no collection. Both mixes at eta 1.0 and the same
# compute (60 steps x one 4096-token row, lr 2e-4: the 245,760 row tokens of the eta sweep's 120 x 2048),
# trained side by side; evaluated on the 50 ALFWorld std games; held-out losses; report. About 1.5
# hours on the 2-core CPU. Why 4096: the failures run to the turn limit and are long; at 2048, 02_filter
# drops 51 of the 80 samples as too long and the "unfiltered" arm would hold little but the
# successes (26 kept); at 4096 it keeps 66 (11 too long, 3 duplicates).
#   nohup bash experiments/runs_2026-12-03/self_teacher_train.sh > runs/s7.log 2>&1 &
cd "$(dirname "$0")/../.."
STUDY=$PWD/runs/s7 ETAS="" SELF_SAMPLES=$PWD/experiments/runs_2026-12-03/self_samples SELF_ATTEMPTS=2 SELF_ETA=1.0 \
SEQ=4096 STEPS=60 ROWS=1 LR=2e-4 MIX_PER_ROW=5 HELDIN=alfworld HELDIN_LIMIT=0 OTHER= SEEN_LIMIT=0 EVAL_BASE=0 JOBS=2 \
RESULTS_MD=$PWD/experiments/runs_2026-12-03/self/RESULTS.md RESULTS_JSON=$PWD/experiments/runs_2026-12-03/self/results.json \
bash experiments/reproduce.sh
