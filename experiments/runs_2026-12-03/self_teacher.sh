#!/usr/bin/env bash
# The filtered-vs-unfiltered comparison (issue 12, claim 3) with a teacher that succeeds sometimes: the
# model tuned at eta 1.0 on the explorer's 300 ALFWorld games (the 2026-12-02 recipe: 120 steps x one
# 2048-token row, lr 2e-4; 44% on ALFWorld std there) sampled at T = 0.7, two attempts (seeds 1, 2) on 40 train
# games; then the base trained on all its trajectories vs on the successful ones only (eta 1.0, the same
# 120 steps), both evaluated on ALFWorld std. Two jobs side by side, one core each.
#   nohup bash experiments/runs_2026-12-03/self_teacher.sh > runs/s6.log 2>&1 &
cd "$(dirname "$0")/../.."
STUDY=$PWD/runs/s6 TEACHER=explorer ALF_GAMES=300 DB_TASKS=0 SEQ=2048 STEPS=120 ROWS=1 LR=2e-4 MIX_PER_ROW=5 \
ETAS="1.0" HELDIN=alfworld HELDIN_LIMIT=0 OTHER= SEEN_LIMIT=0 EVAL_BASE=0 \
SELF_GAMES=40 SELF_ATTEMPTS=2 SELF_TEMPERATURE=0.7 SELF_FROM=eta1.0 SELF_ETA=1.0 JOBS=2 \
RESULTS_MD=$PWD/runs/s6/RESULTS.md RESULTS_JSON=$PWD/runs/s6/results.json \
bash experiments/reproduce.sh
