#!/usr/bin/env bash
# The reproduction study: does agent tuning make a model succeed where its base fails? Every
# trained run starts from the same base model and gets the same compute (STEPS steps of ROWS
# packed rows of the seq_len 02_filter.py fixed); they differ only in their data.
#   (1) base vs tuned (eta 0.2) on the std test sets (held-in), held-out and general tasks
#   (2) the eta sweep 0 / 0.2 / 0.5 / 1.0
#   (3) filtered vs unfiltered trajectories of a teacher that succeeds sometimes: the tuned model
#       itself, sampled at temperature > 0, several attempts per ALFWorld train game
# Every score with n and a 95% interval, paired tests where runs saw the same tasks; writes
# experiments/results.json and experiments/RESULTS.md (experiments/write_results.py).
#   nohup bash experiments/reproduce.sh > runs/study.log 2>&1 &            # 2-core CPU defaults
#   STUDY=runs/gpu ALF_GAMES=3553 STEPS=400 ROWS=16 EVAL_LIMIT=0 bash experiments/reproduce.sh  # one H100/H200
#   MODEL=/models/Llama-2-7b-chat-hf PRESET=7b ... bash experiments/reproduce.sh                    # paper scale
# Rerunning resumes: every stage skips what its outputs already hold.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
S=${STUDY:-runs/study}
MODEL=${MODEL:-}                      # '' = SmolLM2-135M-Instruct
PRESET=${PRESET:-cpu}                 # 04_train.py preset (precision, attention, ds_config)
TEACHER=${TEACHER:-explorer}          # who acts in the training envs: explorer (sees only what the agent sees) | expert (replays solutions)
ALF_GAMES=${ALF_GAMES:-300}           # ALFWorld train games to collect from
DB_TASKS=${DB_TASKS:-500}             # DB tasks written from the dev tables (00_instruct.py --agent=template), collected
                                      # beside the 60 dev tasks (0 = none): a model that saw 60 DB tasks fails DB's format
SEQ=${SEQ:-2048}                      # fixed by 02_filter.py; 03 and 04 read it from there
STEPS=${STEPS:-60}; ROWS=${ROWS:-4}   # optimizer steps x packed rows per step, the same for every run
LR=${LR:-2e-4}
MIX_PER_ROW=${MIX_PER_ROW:-5}         # mix samples per trained row (about what a row packs: one pass over the mix)
ETAS=${ETAS-"0.0 0.2 0.5 1.0"}
HELDIN=${HELDIN:-alfworld,db,os}      # full std sets unless HELDIN_LIMIT
HELDIN_LIMIT=${HELDIN_LIMIT:-0}
OTHER=${OTHER-hotpotqa,gsm8k,humaneval}
EVAL_LIMIT=${EVAL_LIMIT:-50}          # episodes per held-out/general task
SEEN_LIMIT=${SEEN_LIMIT:-0}           # > 0: also that many ALFWorld valid_seen games (scenes of train, games not
                                      # collected from), evaluated as task alfworld_seen (part seen/)
EVAL_BASE=${EVAL_BASE:-1}             # 0: the base model is not evaluated (a study that compares tuned runs only)
SELF_GAMES=${SELF_GAMES:-100}; SELF_ATTEMPTS=${SELF_ATTEMPTS:-2}; SELF_TEMPERATURE=${SELF_TEMPERATURE:-0.7}
SELF_FROM=${SELF_FROM:-eta0.2}        # the tuned run sampled as the teacher (one of ETAS')
SELF_ETA=${SELF_ETA:-0.2}             # the eta of the filtered and unfiltered mixes
SELF_HELDIN=${SELF_HELDIN:-$HELDIN}   # the held-in tasks the two are evaluated on
LOSS_LIMIT=${LOSS_LIMIT:-40}          # held-out losses: conversations per file (0: no losses)
SELF_SAMPLES=${SELF_SAMPLES:-}        # a folder already holding the teacher's samples (attempt*/alfworld.jsonl, e.g. a
                                      # committed one): no sampling, no teacher, no collection needed
REPLAY_ETA=${REPLAY_ETA:-}            # e.g. 1.0: also train on the replay expert's ALFWorld trajectories (same games,
                                      # same compute) and compare with the explorer's run at that eta (run replay_eta<E>)
REPLAY_HELDIN=${REPLAY_HELDIN:-alfworld}
JOBS=${JOBS:-1}                       # trainings / evaluations run side by side, the cores split among them (on this
                                      # CPU one core per training gives nearly the throughput of two)
THREADS=$(( $(nproc) / JOBS )); [ $THREADS -ge 1 ] || THREADS=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS} TOKENIZERS_PARALLELISM=false
mkdir -p $S/logs
start=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - start ))s] $*"; }

launch() {  # run "$@" in the background, at most JOBS at a time; a failed job stops the study
  "$@" > $S/logs/$2.$1.log 2>&1 &
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
}
finish() { while [ -n "$(jobs -rp)" ]; do wait -n; done; }

train() {  # name mix_dir
  [ -e $S/train/$1/final/config.json ] && return
  $PY 04_train.py --preset=$PRESET --model="$MODEL" --data=$2/train.jsonl --val_data=$2/val.jsonl \
    --out_dir=$S/train/$1 --batch_size=$ROWS --max_steps=$STEPS --lr=$LR --eval_interval=$STEPS \
    --save_interval=100000
}
evaluate() {  # run model_dir [held-in tasks]
  [ -e $S/eval/$1/heldin/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=${3:-$HELDIN} \
    --limit=$HELDIN_LIMIT --workers=8 --out_dir=$S/eval/$1/heldin
  [ -z "$OTHER" ] || [ -e $S/eval/$1/other/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=$OTHER \
    --limit=$EVAL_LIMIT --workers=8 --out_dir=$S/eval/$1/other
  [ "$SEEN_LIMIT" -eq 0 ] || [ -e $S/eval/$1/seen/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=alfworld \
    --task_splits='{"alfworld": "valid_seen"}' --limit=$SEEN_LIMIT --workers=8 --out_dir=$S/eval/$1/seen
}

# eta 0 trains on general data only: a study of eta 0 alone (no replay, no self-teacher) collects nothing
general_only() { [ "$1" = 0 ] || [ "$1" = 0.0 ]; }
NEEDS_AGENT_DATA=0
for eta in $ETAS; do general_only $eta || NEEDS_AGENT_DATA=1; done
[ -z "$REPLAY_ETA" ] && { [ "$SELF_ATTEMPTS" -eq 0 ] || [ -n "$SELF_SAMPLES" ]; } || NEEDS_AGENT_DATA=1
if [ $NEEDS_AGENT_DATA = 1 ]; then
stage "collect: $TEACHER on $ALF_GAMES ALFWorld train games and $DB_TASKS DB tasks from the dev tables, OS and DB dev; filter"
$PY 01_collect.py --env=alfworld --agent=$TEACHER --limit=$ALF_GAMES --out_dir=$S/raw --workers=2
$PY 01_collect.py --env=os,db --agent=expert --out_dir=$S/raw --workers=4
DERIVED=
if [ "$DB_TASKS" -gt 0 ]; then
  [ -e $S/instruct/db_tasks.jsonl ] || $PY 00_instruct.py --env=db --agent=template --n=$DB_TASKS --out_dir=$S/instruct
  $PY 01_collect.py --env=db --tasks=$S/instruct/db_tasks.jsonl --agent=$TEACHER --out_dir=$S/raw_derived --workers=2
  DERIVED=",$S/raw_derived/db.jsonl"
fi
$PY 02_filter.py --inputs="$S/raw/*.jsonl$DERIVED" --out_dir=$S/filtered --seq_len=$SEQ --model="$MODEL"
if [ -n "$REPLAY_ETA" ]; then   # the same ALFWorld games replayed from their walkthroughs; OS and DB as above
  $PY 01_collect.py --env=alfworld --agent=expert --limit=$ALF_GAMES --out_dir=$S/raw_replay --workers=2
  $PY 02_filter.py --inputs="$S/raw_replay/alfworld.jsonl,$S/raw/os.jsonl,$S/raw/db.jsonl$DERIVED" --out_dir=$S/filtered_replay \
    --seq_len=$SEQ --model="$MODEL"
fi
fi

stage "(1)+(2) mixes at eta $ETAS and their training runs ($STEPS steps x $ROWS rows)"
for eta in $ETAS; do   # eta 0: general data only, at the seq_len and tokenizer the agent data would have
  if general_only $eta; then agent="--agent_data=[] --seq_len=$SEQ --model=$MODEL"
  else agent="--agent_data=$S/filtered/agent.jsonl"; fi
  $PY 03_mix.py $agent --eta=$eta --total=$(( STEPS * ROWS * MIX_PER_ROW )) \
    --out_dir=$S/mix/eta$eta
done
if [ -n "$REPLAY_ETA" ]; then
  $PY 03_mix.py --agent_data=$S/filtered_replay/agent.jsonl --eta=$REPLAY_ETA --total=$(( STEPS * ROWS * MIX_PER_ROW )) \
    --out_dir=$S/mix/replay_eta$REPLAY_ETA
fi
for eta in $ETAS; do launch train eta$eta $S/mix/eta$eta; done
[ -z "$REPLAY_ETA" ] || launch train replay_eta$REPLAY_ETA $S/mix/replay_eta$REPLAY_ETA
finish

if [ -n "$SELF_SAMPLES" ]; then stage "(3) the teacher's samples in $SELF_SAMPLES: filtered vs unfiltered"
else stage "(3) $SELF_FROM as a teacher: $SELF_ATTEMPTS attempts at T=$SELF_TEMPERATURE on $SELF_GAMES train games"; fi
sample() {  # attempt: one sampled pass of the tuned model over the games (01 resumes a cut-off pass)
  $PY 01_collect.py --env=alfworld --agent=hf --model=$S/train/$SELF_FROM/final --temperature=$SELF_TEMPERATURE \
    --seed=$1 --max_tokens=128 --limit=$SELF_GAMES --out_dir=$S/raw_self/attempt$1 --workers=8
}
[ -n "$SELF_SAMPLES" ] || for i in $(seq 1 $SELF_ATTEMPTS); do launch sample $i; done   # (SELF_ATTEMPTS=0: none)
finish
SAMPLES=${SELF_SAMPLES:-$S/raw_self}
SELF_RUNS=
if [ "$SELF_ATTEMPTS" -gt 0 ]; then
  $PY 02_filter.py --inputs="$SAMPLES/*/*.jsonl" --out_dir=$S/filtered_self --seq_len=$SEQ --per_task=0 --model="$MODEL"
  $PY 02_filter.py --inputs="$SAMPLES/*/*.jsonl" --out_dir=$S/unfiltered_self --seq_len=$SEQ --per_task=0 \
    --model="$MODEL" --min_reward=0.0 --keep_finish="['answered','max_turns','invalid_format','repetition','context_limit']" \
    --max_repeats=0
  for kind in filtered unfiltered; do
    if [ -s $S/${kind}_self/agent.jsonl ]; then
      $PY 03_mix.py --agent_data=$S/${kind}_self/agent.jsonl --eta=$SELF_ETA --total=$(( STEPS * ROWS * MIX_PER_ROW )) \
        --out_dir=$S/mix/self_$kind
      SELF_RUNS="$SELF_RUNS self_$kind"
    else
      echo "self_$kind: no trajectory kept; the comparison is not run"
    fi
  done
fi
for run in $SELF_RUNS; do launch train $run $S/mix/$run; done
finish

stage "evaluate base, every eta and the self-teacher runs (logs: $S/logs)"
[ "$EVAL_BASE" -eq 0 ] || launch evaluate base "$MODEL"
for eta in $ETAS; do launch evaluate eta$eta $S/train/eta$eta/final; done
[ -z "$REPLAY_ETA" ] || launch evaluate replay_eta$REPLAY_ETA $S/train/replay_eta$REPLAY_ETA/final "$REPLAY_HELDIN"
for run in $SELF_RUNS; do launch evaluate $run $S/train/$run/final "$SELF_HELDIN"; done
finish

stage "held-out losses of the base and every trained run, on conversations none of them trained on"
# the explorer's trajectories on LOSS_LIMIT ALFWorld valid_seen games (runs train on train games) and the
# reference answers of LOSS_LIMIT GSM8K and HumanEval test problems; only the text the agent/answerer wrote
if [ "$LOSS_LIMIT" -gt 0 ]; then
  [ -e $S/heldout/alfworld_valid_seen/alfworld.jsonl ] || $PY 01_collect.py --env=alfworld --agent=explorer \
    --splits="{'alfworld': 'valid_seen'}" --limit=$LOSS_LIMIT --out_dir=$S/heldout/alfworld_valid_seen --workers=2
  [ -e $S/heldout/general/results.json ] || $PY 05_eval.py --agent=expert --tasks=gsm8k,humaneval --limit=$LOSS_LIMIT \
    --out_dir=$S/heldout/general --workers=2
  loss() {  # run model_dir
    [ -e $S/loss/$1.json ] || $PY experiments/heldout_loss.py --model="$2" --limit=$LOSS_LIMIT --out=$S/loss/$1.json \
      --data=alfworld_valid_seen=$S/heldout/alfworld_valid_seen/alfworld.jsonl,gsm8k_reference=$S/heldout/general/episodes/gsm8k.jsonl,humaneval_reference=$S/heldout/general/episodes/humaneval.jsonl
  }
  launch loss base "$MODEL"
  for run in $(ls $S/train); do
    if [ -e $S/train/$run/final/config.json ]; then launch loss $run $S/train/$run/final; fi
  done
  finish
fi

stage "report"
command="STUDY=$S MODEL=$MODEL PRESET=$PRESET TEACHER=$TEACHER ALF_GAMES=$ALF_GAMES DB_TASKS=$DB_TASKS SEQ=$SEQ STEPS=$STEPS ROWS=$ROWS LR=$LR MIX_PER_ROW=$MIX_PER_ROW ETAS='$ETAS' HELDIN=$HELDIN HELDIN_LIMIT=$HELDIN_LIMIT OTHER=$OTHER EVAL_LIMIT=$EVAL_LIMIT SEEN_LIMIT=$SEEN_LIMIT EVAL_BASE=$EVAL_BASE SELF_GAMES=$SELF_GAMES SELF_ATTEMPTS=$SELF_ATTEMPTS SELF_FROM=$SELF_FROM SELF_ETA=$SELF_ETA SELF_HELDIN=$SELF_HELDIN SELF_SAMPLES=$SELF_SAMPLES LOSS_LIMIT=$LOSS_LIMIT REPLAY_ETA=$REPLAY_ETA JOBS=$JOBS bash experiments/reproduce.sh"
RESULTS_JSON=${RESULTS_JSON:-experiments/results.json}
$PY experiments/write_results.py --study=$S --command="$command" --seconds=$(( $(date +%s) - start )) \
  --out_md=${RESULTS_MD:-experiments/RESULTS.md} --out_json=$RESULTS_JSON --out_outcomes=$(dirname $RESULTS_JSON)/outcomes.jsonl
