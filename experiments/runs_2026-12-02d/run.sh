#!/usr/bin/env bash
# Issue 11's side-by-side run, made again from scratch on a fresh machine (the 2026-12-02 study's
# files did not survive the machine): the explorer's and the replay expert's trajectories of the same
# 300 ALFWorld train games (plus OS/DB dev, both arms), mixed at eta 1.0, the same compute (120 steps
# x one 2048-token row, lr 2e-4, as the 2026-12-02 study), evaluated on ALFWorld std (50 valid_unseen
# games) and 50 valid_seen games. Two jobs side by side, one core each.
#   nohup bash experiments/runs_2026-12-02d/run.sh > runs/s4.log 2>&1 &
cd "$(dirname "$0")/../.."
STUDY=$PWD/runs/s4 TEACHER=explorer ALF_GAMES=300 DB_TASKS=0 SEQ=2048 STEPS=120 ROWS=1 LR=2e-4 MIX_PER_ROW=5 \
ETAS="1.0" HELDIN=alfworld HELDIN_LIMIT=0 OTHER= SEEN_LIMIT=50 EVAL_BASE=0 SELF_ATTEMPTS=0 REPLAY_ETA=1.0 JOBS=2 \
RESULTS_MD=$PWD/runs/s4/RESULTS.md RESULTS_JSON=$PWD/runs/s4/results.json \
bash experiments/reproduce.sh
