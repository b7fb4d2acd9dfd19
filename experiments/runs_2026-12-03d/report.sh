#!/usr/bin/env bash
# The study's report, after run.sh, extra.sh, miniwob.sh and sciworld.sh: eta0.2_db's training log put next to eta0.2_db_2ep's
# (write_results.py finds their shared mix from eta0.2_db_2ep's training config), every earlier run carried over.
#   bash experiments/runs_2026-12-03d/report.sh
cd "$(dirname "$0")/../.."
S=${STUDY:-runs/s10} PREV=${PREV:-runs/s8} OUT=experiments/runs_2026-12-03d
mkdir -p $S/train/eta0.2_db
[ -e $S/train/eta0.2_db/metrics.jsonl ] || cp $PREV/train/eta0.2_db/metrics.jsonl $S/train/eta0.2_db/
.venv/bin/python experiments/write_results.py --study=$S --previous="['experiments/runs_2026-12-03c/results.json']" \
  --command="bash $OUT/run.sh; bash $OUT/extra.sh; bash $OUT/miniwob.sh; bash $OUT/sciworld.sh" \
  --out_md=$OUT/RESULTS.md --out_json=$OUT/results.json --out_outcomes=$OUT/outcomes.jsonl
