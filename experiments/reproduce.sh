#!/usr/bin/env bash
# The reproduction study at small scale (SmolLM2-135M, CPU or one GPU): the paper's three claims.
#   (1) tuned vs base on held-in and held-out tasks      (runs/study/eta0.2 vs base)
#   (2) the eta sweep 0, 0.2, 0.5, 1.0: agent vs general scores
#   (3) filtered vs unfiltered trajectories from an LLM teacher (the base model through the hf
#       agent, a weak teacher, unless TEACHER_URL/TEACHER_MODEL name an OpenAI-compatible one)
# Writes experiments/RESULTS.md with every figure and the command that made it.
#   bash experiments/reproduce.sh                      # hours on 2 CPU cores; minutes on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
S=${STUDY:-runs/study}
SEQ=${SEQ:-2048}; STEPS=${STEPS:-60}; TOTAL=${TOTAL:-400}; LIMIT=${LIMIT:-10}
TASKS=${TASKS:-os,db,alfworld,sciworld,miniwob,gsm8k,humaneval}
evaluate() {  # name model
  $PY 05_eval.py --label="$1" --model="$2" --tasks=$TASKS --limit=$LIMIT --max_tokens=256 \
    --out_dir=$S/eval/$1 $( [ "$1" != base ] && echo --baseline=$S/eval/base/results.json )
}
train() {  # name train.jsonl val.jsonl
  $PY 04_train.py --preset=cpu --data="$2" --val_data="$3" --out_dir=$S/train/$1 --seq_len=$SEQ \
    --batch_size=1 --max_steps=$STEPS --eval_interval=$STEPS
}

# expert data (as make demo) and its filtered set
$PY 01_collect.py --env=os,db --out_dir=$S/raw_expert --workers=2
$PY 01_collect.py --env=alfworld --limit=100 --out_dir=$S/raw_expert --workers=2
$PY 02_filter.py --inputs="$S/raw_expert/*.jsonl" --out_dir=$S/filtered_expert --seq_len=$SEQ
evaluate base ""

# (1) + (2): the eta sweep, the same number of training samples each
for eta in 0.0 0.2 0.5 1.0; do
  $PY 03_mix.py --agent_data=$S/filtered_expert/agent.jsonl --eta=$eta --total=$TOTAL --seq_len=$SEQ --out_dir=$S/mix/eta$eta
  train eta$eta $S/mix/eta$eta/train.jsonl $S/mix/eta$eta/val.jsonl
  evaluate eta$eta $S/train/eta$eta/final
done

# (3): an LLM teacher's trajectories, filtered vs not
if [ -n "${TEACHER_URL:-}" ]; then
  teacher=(--agent=openai --base_url=$TEACHER_URL --model=${TEACHER_MODEL:?})
else
  teacher=(--agent=hf --model=)
fi
$PY 01_collect.py --env=os,db,alfworld "${teacher[@]}" --limit=${TEACHER_LIMIT:-60} --out_dir=$S/raw_teacher --workers=4
$PY 02_filter.py --inputs="$S/raw_teacher/*.jsonl" --out_dir=$S/filtered_teacher --seq_len=$SEQ
$PY 02_filter.py --inputs="$S/raw_teacher/*.jsonl" --out_dir=$S/unfiltered_teacher --seq_len=$SEQ \
  --min_reward=0.0 --keep_finish="['answered','max_turns','invalid_format','context_limit']" --max_repeats=1000
for kind in filtered unfiltered; do
  $PY 03_mix.py --agent_data=$S/${kind}_teacher/agent.jsonl --eta=0.2 --total=$TOTAL --seq_len=$SEQ --out_dir=$S/mix/$kind
  train $kind $S/mix/$kind/train.jsonl $S/mix/$kind/val.jsonl
  evaluate $kind $S/train/$kind/final
done

{
  echo "# Reproduction study (SmolLM2-135M-Instruct)"
  echo
  echo "Made by: \`STUDY=$S SEQ=$SEQ STEPS=$STEPS TOTAL=$TOTAL LIMIT=$LIMIT bash experiments/reproduce.sh\` on $(date -u +%F)."
  echo
  for r in $S/eval/*/results.md; do echo "## $(basename $(dirname $r))"; cat "$r"; echo; done
} > experiments/RESULTS.md
echo "-> experiments/RESULTS.md"
