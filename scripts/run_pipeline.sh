#!/usr/bin/env bash
# The main job (make demo), like nanochat's speedrun: from a set-up machine to a trained and
# evaluated agent model, on the CPU, with no API key. Each stage resumes if rerun. Sizes are
# small so that it ends in well under 30 minutes on 2 cores; the same scripts scale by settings.
#   bash scripts/run_pipeline.sh                      # everything under runs/demo
#   RUN=runs/try2 STEPS=80 bash scripts/run_pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN=${RUN:-runs/demo}
SEQ=${SEQ:-2048}              # the length limit 02 filters to; 03 and 04 read it from there
STEPS=${STEPS:-20}            # optimizer steps of 04_train.py --preset=cpu (one row each)
EVAL_TURNS=${EVAL_TURNS:-3}   # agent replies per eval episode (a smoke-run cap: 0 = the envs' own)
ALFWORLD_GAMES=${ALFWORLD_GAMES:-24}   # ALFWorld train games to collect from
EVAL_LIMIT=${EVAL_LIMIT:-1}   # episodes per evaluation task and model
EVAL_TOKENS=${EVAL_TOKENS:-128}  # tokens per reply (CPU generation runs at ~10 tokens/s)
EVAL_TASKS=${EVAL_TASKS:-os,db,alfworld,sciworld,miniwob,hotpotqa,gsm8k,humaneval,mmlu}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false
start=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - start ))s] $*"; }

stage "01 collect: expert (os, db dev sets) and explorer (alfworld train games) trajectories; never the std test sets"
$PY 01_collect.py --env=os,db --out_dir=$RUN/raw --workers=2
$PY 01_collect.py --env=alfworld --agent=explorer --limit=$ALFWORLD_GAMES --out_dir=$RUN/raw_explorer --workers=2
if [ -n "${OPENAI_API_KEY:-}${OPENAI_BASE_URL:-}" ]; then
  stage "01 collect: the openai teacher (${TEACHER_MODEL:-gpt-4o-mini})"
  $PY 01_collect.py --env=os,db --agent=openai --model=${TEACHER_MODEL:-gpt-4o-mini} \
    --out_dir=$RUN/raw_teacher --workers=8 --limit=${TEACHER_LIMIT:-20}
fi

stage "02 filter"
$PY 02_filter.py --inputs="$RUN/raw*/*.jsonl" --out_dir=$RUN/filtered --seq_len=$SEQ

stage "03 mix with general data at eta = 0.2"
$PY 03_mix.py --agent_data=$RUN/filtered/agent.jsonl --eta=0.2 --out_dir=$RUN/mix

stage "04 train SmolLM2-135M-Instruct (CPU, through DeepSpeed)"
$PY 04_train.py --preset=cpu --data=$RUN/mix/train.jsonl --val_data=$RUN/mix/val.jsonl \
  --out_dir=$RUN/train --batch_size=1 --max_steps=$STEPS --eval_interval=$STEPS --resume=$([ -e $RUN/train/deepspeed/latest ] && echo True || echo False)

stage "05 evaluate the base model"
$PY 05_eval.py --label=base --tasks=$EVAL_TASKS --limit=$EVAL_LIMIT --max_tokens=$EVAL_TOKENS --workers=4 \
  --max_turns=$EVAL_TURNS --out_dir=$RUN/eval_base
stage "05 evaluate the tuned model"
$PY 05_eval.py --label=tuned --model=$RUN/train/final --tasks=$EVAL_TASKS --limit=$EVAL_LIMIT \
  --max_tokens=$EVAL_TOKENS --workers=4 --max_turns=$EVAL_TURNS --out_dir=$RUN/eval_tuned --baseline=$RUN/eval_base/results.json \
  --compare=$RUN/eval_base/results.json

stage "done in $(( $(date +%s) - start ))s"
cat $RUN/eval_tuned/results.md
echo
echo "trajectories: $RUN/raw/*.jsonl, $RUN/raw_explorer/*.jsonl   (read them: $PY scripts/view.py $RUN/raw/os.jsonl)"
echo "filter report: $RUN/filtered/report.json   mix: $RUN/mix/mix_report.json"
echo "model: $RUN/train/final   metrics: $RUN/train/metrics.jsonl, $RUN/train/loss.png"
echo "results: $RUN/eval_tuned/results.{json,md,png}, base: $RUN/eval_base/"
