#!/usr/bin/env bash
# The reproduction study at small scale (SmolLM2-135M-Instruct on 2 CPU cores, ~40 minutes): the
# paper's three claims, each trained run with the same compute (STEPS rows of SEQ tokens).
#   (1) tuned vs base on held-in and held-out tasks             (eta0.2 vs base)
#   (2) the eta sweep 0, 0.2, 0.5, 1.0: agent vs general ability
#   (3) filtered vs unfiltered trajectories of an LLM teacher (the base model through the hf agent,
#       a weak teacher, unless TEACHER_URL/TEACHER_MODEL name an OpenAI-compatible endpoint)
# Measures: the teacher-forced loss on held-out expert trajectories of every agent task and on
# held-out general data (experiments/heldout_loss.py; sensitive at this scale), and 05_eval's
# success rates for base vs eta0.2 with small limits. Writes experiments/RESULTS.md.
#   bash experiments/reproduce.sh
#   STUDY=runs/big SEQ=4096 STEPS=400 TOTAL=4000 EVAL_LIMIT=0 bash experiments/reproduce.sh   # on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
S=${STUDY:-runs/study}
SEQ=${SEQ:-2048}              # packed row length (and the filter/mix length limit)
STEPS=${STEPS:-8}             # optimizer steps of one row each, the same for every trained run
TOTAL=${TOTAL:-64}            # training samples in every mix (eta of them agent)
LOSS_LIMIT=${LOSS_LIMIT:-8}   # held-out conversations per task for the loss
EVAL_LIMIT=${EVAL_LIMIT:-1}; EVAL_TURNS=${EVAL_TURNS:-3}; EVAL_TOKENS=${EVAL_TOKENS:-128}
TEACHER_LIMIT=${TEACHER_LIMIT:-4}; TEACHER_TURNS=${TEACHER_TURNS:-4}
AGENT_TASKS=os,db,alfworld,sciworld,miniwob
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false
mkdir -p $S
start=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - start ))s] $*"; }

train() {  # name mix_dir
  [ -e $S/train/$1/final/config.json ] && return
  $PY 04_train.py --preset=cpu --data=$2/train.jsonl --val_data='' --out_dir=$S/train/$1 \
    --seq_len=$SEQ --batch_size=1 --max_steps=$STEPS --eval_interval=0
}
loss() {  # name model_dir
  [ -e $S/loss/$1.json ] && return
  local sets=""
  for t in ${AGENT_TASKS//,/ } gsm8k; do sets+="$t=$S/heldout_expert/episodes/$t.jsonl,"; done
  $PY experiments/heldout_loss.py --model="$2" --data="${sets}general=$S/heldout_general.jsonl" \
    --limit=$LOSS_LIMIT --seq_len=$SEQ --out=$S/loss/$1.json
}

stage "expert training trajectories (os, db: dev sets; alfworld: train games) and filter"
$PY 01_collect.py --env=os,db --out_dir=$S/raw_expert --workers=2
$PY 01_collect.py --env=alfworld --limit=24 --out_dir=$S/raw_expert --workers=2
$PY 02_filter.py --inputs="$S/raw_expert/*.jsonl" --out_dir=$S/filtered_expert --seq_len=$SEQ

stage "held-out measurement sets: expert trajectories on the evaluation splits, general val"
$PY 05_eval.py --agent=expert --tasks=$AGENT_TASKS,gsm8k --limit=$LOSS_LIMIT --workers=2 \
  --out_dir=$S/heldout_expert

stage "(2) the eta sweep: mixes of $TOTAL samples, $STEPS steps each"
for eta in 0.0 0.2 0.5 1.0; do
  $PY 03_mix.py --agent_data=$S/filtered_expert/agent.jsonl --eta=$eta --total=$TOTAL --seq_len=$SEQ \
    --out_dir=$S/mix/eta$eta
  train eta$eta $S/mix/eta$eta
done
# the general val slice is held out before sampling, the same for every eta: never trained on
grep '"source": "general:' $S/mix/eta0.2/val.jsonl > $S/heldout_general.jsonl

stage "(3) the teacher's trajectories, filtered vs unfiltered"
if [ -n "${TEACHER_URL:-}" ]; then
  teacher=(--agent=openai --base_url=$TEACHER_URL --model=${TEACHER_MODEL:?})
else
  teacher=(--agent=hf --model= --max_tokens=$EVAL_TOKENS --max_turns=$TEACHER_TURNS)
fi
$PY 01_collect.py --env=os,db,alfworld "${teacher[@]}" --limit=$TEACHER_LIMIT --out_dir=$S/raw_teacher --workers=4
$PY 02_filter.py --inputs="$S/raw_teacher/*.jsonl" --out_dir=$S/filtered_teacher --seq_len=$SEQ
$PY 02_filter.py --inputs="$S/raw_teacher/*.jsonl" --out_dir=$S/unfiltered_teacher --seq_len=$SEQ \
  --min_reward=0.0 --keep_finish="['answered','max_turns','invalid_format','context_limit']" --max_repeats=1000
for kind in filtered unfiltered; do
  if [ -s $S/${kind}_teacher/agent.jsonl ]; then
    $PY 03_mix.py --agent_data=$S/${kind}_teacher/agent.jsonl --eta=0.2 --total=$TOTAL --seq_len=$SEQ \
      --out_dir=$S/mix/teacher_$kind
    train teacher_$kind $S/mix/teacher_$kind
  else
    echo "teacher_$kind: no trajectory survived the filter; this run would be the eta=0 run"
  fi
done

stage "held-out losses of every model"
loss base ""
for run in eta0.0 eta0.2 eta0.5 eta1.0 teacher_filtered teacher_unfiltered; do
  [ -e $S/train/$run/final/config.json ] && loss $run $S/train/$run/final
done

stage "(1) success rates, base vs eta0.2 (limit $EVAL_LIMIT, $EVAL_TURNS replies, $EVAL_TOKENS tokens)"
evaluate() {  # label model [baseline]
  $PY 05_eval.py --label=$1 --model="$2" --tasks=$AGENT_TASKS,gsm8k,humaneval --limit=$EVAL_LIMIT \
    --max_turns=$EVAL_TURNS --max_tokens=$EVAL_TOKENS --workers=4 --out_dir=$S/eval/$1 ${3:+--baseline=$3 --compare=$3}
}
evaluate base ""
evaluate eta0.2 $S/train/eta0.2/final $S/eval/base/results.json

stage "report"
command="STUDY=$S SEQ=$SEQ STEPS=$STEPS TOTAL=$TOTAL LOSS_LIMIT=$LOSS_LIMIT EVAL_LIMIT=$EVAL_LIMIT EVAL_TURNS=$EVAL_TURNS EVAL_TOKENS=$EVAL_TOKENS TEACHER_LIMIT=$TEACHER_LIMIT TEACHER_TURNS=$TEACHER_TURNS bash experiments/reproduce.sh"
$PY experiments/write_results.py --study=$S --command="$command" --seconds=$(( $(date +%s) - start )) \
  --out=experiments/RESULTS.md
