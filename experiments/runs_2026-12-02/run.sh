#!/usr/bin/env bash
# waits for the ALFWorld collections started by hand (same commands as reproduce.sh's), then the study
# (no wait: reproduce.sh collects)
cd /work/study
STUDY=/work/main/runs/s3 TEACHER=explorer ALF_GAMES=300 SEQ=2048 STEPS=120 ROWS=1 LR=2e-4 MIX_PER_ROW=5 \
ETAS="0.2 1.0" HELDIN=alfworld,db HELDIN_LIMIT=0 OTHER= SELF_ATTEMPTS=0 REPLAY_ETA=1.0 JOBS=3 \
RESULTS_MD=/work/main/runs/s3/RESULTS.md RESULTS_JSON=/work/main/runs/s3/results.json \
bash experiments/reproduce.sh
