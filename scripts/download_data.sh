#!/usr/bin/env bash
# Fetches the public datasets from their original sources into DIR (default ./public_data), laid
# out as the pipeline reads them; then: export AGENTUNE_DATA=DIR. Needs git, curl, tar, xz, unzip
# and python3 with pandas + joblib (to export AgentTuning's HotpotQA pickles).
#   bash scripts/download_data.sh /data/agentune
set -euo pipefail
DIR=$(mkdir -p "${1:-public_data}" && cd "${1:-public_data}" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

sparse() {  # repo commit path... : a shallow sparse checkout of some paths at one commit
  local repo=$1 commit=$2; shift 2
  git -C "$tmp" init -q "$(basename "$repo")"
  local d="$tmp/$(basename "$repo")"
  git -C "$d" remote add origin "https://github.com/$repo.git"
  git -C "$d" sparse-checkout set --no-cone "$@"
  git -C "$d" fetch -q --depth 1 --filter=blob:none origin "$commit"
  git -C "$d" checkout -q FETCH_HEAD
  echo "$d"
}

echo "AgentBench OS, DB, ALFWorld task lists and the card game; AgentTuning's HotpotQA (THUDM/AgentTuning, Apache-2.0)"
src=$(sparse THUDM/AgentTuning e33a45d7 /AgentBench.old/data/dbbench /AgentBench.old/data/os_interaction \
  /AgentBench.old/data/alfworld /AgentBench.old/src/tasks/card_game /AgentBench.old/configs/tasks/card_game \
  /eval_heldout/hotpotQA/src/data)
mkdir -p "$DIR/agentbench/dbbench" "$DIR/agentbench/alfworld"
# dev.jsonl: collection; standard.jsonl: AgentBench's std test set (evaluation only)
cp "$src/AgentBench.old/data/dbbench/"{dev,standard}.jsonl "$DIR/agentbench/dbbench/"
# data/1-7: the std test set (evaluation only); dev.json: collection
rm -rf "$DIR/agentbench/os_interaction"; cp -r "$src/AgentBench.old/data/os_interaction" "$DIR/agentbench/"
cp "$src/AgentBench.old/data/alfworld/"{std,dev}.json "$DIR/agentbench/alfworld/"
rm -rf "$DIR/agentbench/card_game"; mkdir -p "$DIR/agentbench/card_game"
(cd "$src" && cp -r --parents AgentBench.old/src/tasks/card_game AgentBench.old/configs/tasks/card_game "$DIR/agentbench/card_game/")
mkdir -p "$DIR/hotpotqa"
python3 - "$src/eval_heldout/hotpotQA/src/data" "$DIR/hotpotqa/agenttuning_hotpotqa_300.json" <<'PY'
import json, sys
import joblib  # the harness's pandas DataFrames
rows = []
for level in ("easy", "medium", "hard"):
    frame = joblib.load(f"{sys.argv[1]}/{level}.joblib")
    for row, (index, item) in enumerate(frame.iterrows()):
        record = {"file": level, "row": row, "df_index": int(index) if str(index).isdigit() else str(index)}
        for key in ("_id", "question", "answer", "type", "level", "supporting_facts", "context"):
            value = item.get(key)
            record[key] = value.tolist() if hasattr(value, "tolist") else value
        rows.append(record)
json.dump(rows, open(sys.argv[2], "w"), ensure_ascii=False, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
print("hotpotqa:", len(rows), "questions")
PY

echo "ALFWorld game files (alfworld/alfworld data release, MIT)"
mkdir -p "$DIR/alfworld"
curl -fsSL -o "$tmp/json_2.1.1_tw-pddl.zip" https://github.com/alfworld/alfworld/releases/download/0.2.2/json_2.1.1_tw-pddl.zip
(cd "$tmp" && unzip -q json_2.1.1_tw-pddl.zip)
for split in train valid_seen valid_train; do
  (cd "$tmp" && tar -cJf "$DIR/alfworld/json_2.1.1-$split.tar.xz" json_2.1.1/"$split"/*/*/game.tw-pddl)
done
# only the valid_unseen games AgentBench's std.json and dev.json name (evaluation only)
python3 -c "
import json, sys
for name in ('std', 'dev'):
    for paths in json.load(open('$DIR/agentbench/alfworld/' + name + '.json')).values():
        print('\n'.join(paths))" > "$tmp/unseen.txt"
(cd "$tmp" && tar -cJf "$DIR/alfworld/json_2.1.1-valid_unseen-agentbench.tar.xz" -T unseen.txt)

echo "General conversations (hiyouga/LLaMA-Factory demo sets)"
mkdir -p "$DIR/general"
for f in alpaca_en_demo.json glaive_toolcall_en_demo.json; do
  curl -fsSL -o "$DIR/general/$f" "https://raw.githubusercontent.com/hiyouga/LLaMA-Factory/ff6d4d12/data/$f"
done

echo "GSM8K (openai/grade-school-math, MIT)"
mkdir -p "$DIR/gsm8k"
for f in train test; do
  curl -fsSL -o "$DIR/gsm8k/$f.jsonl" \
    "https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5/grade_school_math/data/$f.jsonl"
done
echo "MMLU (hendrycks/test, MIT): 5 dev questions per subject, the test set, subject categories"
mkdir -p "$DIR/mmlu"
curl -fsSL -o "$tmp/mmlu.tar" https://people.eecs.berkeley.edu/~hendrycks/data.tar
(cd "$tmp" && tar -xf mmlu.tar)
curl -fsSL -o "$tmp/categories.py" https://raw.githubusercontent.com/hendrycks/test/master/categories.py
python3 - "$tmp" "$DIR/mmlu" <<'PY'
import csv, glob, json, os, sys
tmp, out = sys.argv[1:]
for split in ("dev", "test"):
    with open(f"{out}/mmlu_{split}.jsonl", "w") as f:
        for path in sorted(glob.glob(f"{tmp}/data/{split}/*_{split}.csv")):
            subject = os.path.basename(path)[:-len(f"_{split}.csv")]
            for q, a, b, c, d, answer in csv.reader(open(path, encoding="utf-8")):
                f.write(json.dumps({"subject": subject, "question": q, "choices": [a, b, c, d], "answer": answer}) + "\n")
scope = {}
exec(open(f"{tmp}/categories.py").read(), scope)
by_sub = {sub: cat for cat, subs in scope["categories"].items() for sub in subs}
json.dump({subject: {"subcategory": subs[0], "category": by_sub[subs[0]]}
           for subject, subs in scope["subcategories"].items()}, open(f"{out}/subject_categories.json", "w"), indent=1)
PY

echo "MT-Bench (lm-sys/FastChat, Apache-2.0)"
src=$(sparse lm-sys/FastChat 0e6d3e4b /fastchat/llm_judge/data/mt_bench /fastchat/llm_judge/data/judge_prompts.jsonl)
mkdir -p "$DIR/mt_bench/reference_answer"
cp "$src/fastchat/llm_judge/data/mt_bench/question.jsonl" "$DIR/mt_bench/"
cp "$src/fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl" "$DIR/mt_bench/reference_answer/"
cp "$src/fastchat/llm_judge/data/judge_prompts.jsonl" "$DIR/mt_bench/"
echo "done: export AGENTUNE_DATA=$DIR"
