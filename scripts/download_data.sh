#!/usr/bin/env bash
# Fetches the public datasets from their original sources into DIR (default ./public_data), laid
# out as the pipeline reads them; then: export AGENTUNE_DATA=DIR. Needs git, curl, tar, xz.
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

echo "AgentBench OS and DB tasks (THUDM/AgentTuning, Apache-2.0)"
src=$(sparse THUDM/AgentTuning e33a45d7 /AgentBench.old/data/dbbench/dev.jsonl /AgentBench.old/data/os_interaction)
mkdir -p "$DIR/agentbench/dbbench"
cp "$src/AgentBench.old/data/dbbench/dev.jsonl" "$DIR/agentbench/dbbench/"
rm -rf "$DIR/agentbench/os_interaction"; cp -r "$src/AgentBench.old/data/os_interaction" "$DIR/agentbench/"
rm -rf "$DIR/agentbench/os_interaction/data/7"   # the big generated set, not used here

echo "ALFWorld game files (alfworld/alfworld data release, MIT)"
mkdir -p "$DIR/alfworld"
curl -fsSL -o "$tmp/json_2.1.1_tw-pddl.zip" https://github.com/alfworld/alfworld/releases/download/0.2.2/json_2.1.1_tw-pddl.zip
(cd "$tmp" && unzip -q json_2.1.1_tw-pddl.zip)
for split in train valid_seen valid_train; do
  (cd "$tmp/json_2.1.1" && tar -cJf "$DIR/alfworld/json_2.1.1-$split.tar.xz" "$split"/*/*/game.tw-pddl)
done

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
echo "done: export AGENTUNE_DATA=$DIR"
