#!/usr/bin/env bash
# The study's report, after run.sh and extra.sh: eta0.2_db's mix and training log put next to
# eta0.2_db_2ep's (the same mix file), then write_results.py with every earlier run carried over.
#   bash experiments/runs_2026-12-03d/report.sh
cd "$(dirname "$0")/../.."
S=${STUDY:-runs/s10} PREV=${PREV:-runs/s8} OUT=experiments/runs_2026-12-03d
[ -e $S/mix/eta0.2_db_2ep ] || ln -s eta0.2_db $S/mix/eta0.2_db_2ep
mkdir -p $S/train/eta0.2_db
[ -e $S/train/eta0.2_db/metrics.jsonl ] || cp $PREV/train/eta0.2_db/metrics.jsonl $S/train/eta0.2_db/
[ -e $S/mix/eta0.2_db/mix_report.json ] || cp -r $PREV/mix/eta0.2_db $S/mix/
.venv/bin/python experiments/write_results.py --study=$S --previous="['experiments/runs_2026-12-03c/results.json']" \
  --command="bash $OUT/run.sh; bash $OUT/extra.sh" \
  --out_md=$OUT/RESULTS.md --out_json=$OUT/results.json --out_outcomes=$OUT/outcomes.jsonl
