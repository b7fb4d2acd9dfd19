#!/usr/bin/env bash
# Session 2026-12-02c, on top of the study in runs/s3 (runs_2026-12-02/run.sh and runs_2026-12-02b/run.sh
# made its data, mixes and models): what the study had not measured yet
#   - general abilities: GSM8K (200 of the test set, spread) and HumanEval (all 164), base vs tuned
#     (eta0.2, and the agent-only eta1.0_db)
#   - OS interaction std (all 144), base vs tuned: the third held-in task
#   - held-out: HotpotQA (50 of AgentTuning's 300, spread)
#   - the eta sweep's third point: eta 0.5, same data, recipe and compute as eta0.2 / eta1.0
#   - losses: every model's teacher-forced loss on held-out agent trajectories and general answers
# Three lanes side by side on 2 cores (a training holds 7-8 GB). Every step resumes: 05_eval appends
# episodes, a finished part, training or loss file is skipped. Run from the repository root:
#   STUDY=/work/main/runs/s3 bash experiments/runs_2026-12-02c/run.sh
set -uo pipefail
PY=.venv/bin/python S=${STUDY:-runs/s3}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p $S/logs
train() {  # name mix_dir: the study's recipe, the same compute as eta0.2 / eta1.0
  [ -e $S/train/$1/final/config.json ] || $PY 04_train.py --preset=cpu --model= --data=$2/train.jsonl \
    --val_data=$2/val.jsonl --out_dir=$S/train/$1 --batch_size=1 --max_steps=120 --lr=2e-4 --eval_interval=120 \
    --save_interval=100000 > $S/logs/$1.train.log 2>&1
}
evaluate() {  # run model_dir task [limit]
  [ -e $S/eval/$1/$3/results.json ] || $PY 05_eval.py --label=$1 --model="$2" --tasks=$3 --limit=${4:-0} \
    --workers=8 --out_dir=$S/eval/$1/$3 > $S/logs/$1.eval_$3.log 2>&1
}
general() { evaluate $1 "$2" gsm8k 200; evaluate $1 "$2" humaneval; }

# held-out losses of every model on the same conversations, none of them trained on: the explorer's
# trajectories on 40 ALFWorld valid_seen games (the study trained on train games only) and the
# reference answers of 40 GSM8K test problems and 40 HumanEval problems (their prompt repeats the
# function's signature and docstring, which the reference answer copies)
heldout_data() {
  [ -e $S/heldout/alfworld_valid_seen/alfworld.jsonl ] || $PY 01_collect.py --env=alfworld --agent=explorer \
    --splits="{'alfworld': 'valid_seen'}" --limit=40 --out_dir=$S/heldout/alfworld_valid_seen --workers=1 > $S/logs/heldout_alfworld.log 2>&1
  [ -e $S/heldout/general/results.json ] || $PY 05_eval.py --agent=expert --tasks=gsm8k,humaneval --limit=40 \
    --out_dir=$S/heldout/general --workers=2 > $S/logs/heldout_general.log 2>&1
}
loss() {  # run model_dir
  [ -e $S/loss/$1.json ] || $PY experiments/heldout_loss.py --model="$2" --limit=40 --out=$S/loss/$1.json \
    --data=alfworld_valid_seen=$S/heldout/alfworld_valid_seen/alfworld.jsonl,gsm8k_reference=$S/heldout/general/episodes/gsm8k.jsonl,humaneval_reference=$S/heldout/general/episodes/humaneval.jsonl \
    > $S/logs/$1.loss.log 2>&1
}

lane_a() {
  general base ""; evaluate base "" os
  general eta0.2 $S/train/eta0.2/final; evaluate eta0.2 $S/train/eta0.2/final os
  general eta1.0_db $S/train/eta1.0_db/final   # does agent data only (eta 1.0) cost general abilities?
}
lane_b() {
  [ -e $S/mix/eta0.5/train.jsonl ] || $PY 03_mix.py --agent_data=$S/filtered/agent.jsonl --eta=0.5 --total=600 \
    --out_dir=$S/mix/eta0.5 > $S/logs/mix_eta0.5.log 2>&1
  train eta0.5 $S/mix/eta0.5
  evaluate eta0.5 $S/train/eta0.5/final alfworld
  evaluate base "" hotpotqa 50; evaluate eta0.2 $S/train/eta0.2/final hotpotqa 50
}
lane_losses() {
  heldout_data
  loss base ""; loss eta0.2 $S/train/eta0.2/final; loss eta1.0 $S/train/eta1.0/final
  loss eta1.0_db $S/train/eta1.0_db/final; loss replay_eta1.0 $S/train/replay_eta1.0/final
}
lane_a & lane_b & lane_losses & wait
loss eta0.5 $S/train/eta0.5/final
$PY experiments/write_results.py --study=$S \
  --command="bash experiments/runs_2026-12-02/run.sh; bash experiments/runs_2026-12-02b/run.sh; bash experiments/runs_2026-12-02c/run.sh"
