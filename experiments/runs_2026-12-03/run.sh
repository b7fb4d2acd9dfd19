#!/usr/bin/env bash
# The eta sweep's missing point: eta 0 (general data only, no agent trajectory), at the same compute as
# the 2026-12-02 study's eta 0.2 / 0.5 / 1.0 runs (120 steps x one 2048-token row, lr 2e-4, 600 mix
# samples, seed 1234), evaluated on the 50 ALFWorld std games. One core (the other one was in use).
#   nohup bash experiments/runs_2026-12-03/run.sh > runs/s5.log 2>&1 &
cd "$(dirname "$0")/../.."
OMP_NUM_THREADS=1 STUDY=$PWD/runs/s5 ETAS="0.0" SEQ=2048 STEPS=120 ROWS=1 LR=2e-4 MIX_PER_ROW=5 \
HELDIN=alfworld HELDIN_LIMIT=0 OTHER= SEEN_LIMIT=0 EVAL_BASE=0 SELF_ATTEMPTS=0 JOBS=1 \
RESULTS_MD=$PWD/runs/s5/RESULTS.md RESULTS_JSON=$PWD/runs/s5/results.json \
bash experiments/reproduce.sh
