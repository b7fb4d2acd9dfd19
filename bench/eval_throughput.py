"""Generation throughput of the hf agent on ALFWorld's std games, against naive generation.

new: the hf agent (continuous batching over per-episode KV caches, cached prompt prefixes)
plays the 50 ALFWorld std games (AgentBench's test set) with `workers` concurrent episodes.
naive: plain model.generate per turn, one conversation at a time, the whole conversation
re-encoded and re-prefilled (the hf agent before issue 10), in fp32, timed on `naive_turns` turns
spread evenly over all the turns the new agent played (the same conversations, so the same mix
of short and long contexts). Both rates are generated tokens per second of generation (the new
agent's busy time: waits for the environment are not counted; alfworld_std_wall_s counts them).
The naive replies also say how often the new agent's replies equal fp32 plain greedy ones (all
of them in fp32; bf16 changes some).
cache_read_efficiency, draft_acceptance (drafting: prompt lookup, HFAgent._draft), query_efficiency:
see agentune.agents.generation_rates.
The CPU may be shared with other jobs: only ratios measured in one run mean much.
The last line printed is JSON: naive_tokens_per_s, tokens_per_s, speedup, alfworld_std_wall_s, ...
"""
import json
import os
import tempfile
import time


# -----------------------------------------------------------------------------
model = ""             # HF model dir ('' = the base SmolLM2-135M-Instruct)
split = "std"          # ALFWorld split: std = AgentBench's 50 test games
games = 50
workers = 8            # concurrent episodes (05_eval.py's default)
dtype = "auto"         # the new agent's (auto: bf16 where the CPU has bf16 units, else fp32)
draft = 4              # the new agent's drafted tokens per row and step (prompt lookup; 0 = none)
naive_turns = 24       # turns replayed with naive generation (12 before 2026-12-04: its rate moved 9.6-15.4 tokens/s run to run)
threads = 0            # torch threads (0 = torch's default)
episodes = ""          # keep the new agent's episodes in this JSONL ('' = a temporary file)
# -----------------------------------------------------------------------------
from agentune.config import configure  # noqa: E402
config = configure(globals())

import torch  # noqa: E402

from agentune.agents import generation_rates, make_agent  # noqa: E402
from agentune.envs import env_class  # noqa: E402
from agentune.records import read_jsonl  # noqa: E402
from agentune.rollout import run_episodes  # noqa: E402

if threads:
    torch.set_num_threads(threads)
env_cls = env_class("alfworld")
tasks = env_cls.load_tasks(None, split)[:games]
limit = env_cls.max_reply_tokens or 512  # AgentBench: 128 new tokens per reply
agent = make_agent("hf", model=model, max_tokens=limit, dtype=dtype, draft=draft)
result = {"split": split, "workers": workers, "max_tokens": limit, "threads": torch.get_num_threads(),
          "dtype": agent.describe()["dtype"], "draft": draft}
with tempfile.TemporaryDirectory() as tmp:
    path = episodes or os.path.join(tmp, "new.jsonl")
    if os.path.exists(path):
        raise SystemExit(f"--episodes={path} exists: the wall time needs every game played in this run")
    start = time.time()
    summary = run_episodes("alfworld", tasks, agent, path, workers=workers,
                           desc=f"alfworld {split} ({result['dtype']})")
    result["alfworld_std_wall_s"] = round(time.time() - start, 1)
    records = [r for _, r in read_jsonl(path)]
agent.close()
stats = agent.stats
result.update(games=len(records), finish=summary["finish"], success_rate=summary["success_rate"],
              generated_tokens=stats["generated"], prefilled_tokens=stats["prefilled"],
              reused_tokens=stats["reused"], max_batch=stats["max_rows"], busy_s=stats["busy_s"],
              decode_steps=stats["steps"], drafted_tokens=stats["drafted"],
              fewer_threads_steps=stats["fewer_threads_steps"], **generation_rates(stats))

# every (conversation so far, reply) the new agent produced; naive replays an even spread of them
turns = [(r["messages"][:i], m["content"]) for r in records
         for i, m in enumerate(r["messages"]) if m["role"] == "assistant"]
sample = [turns[i * len(turns) // naive_turns] for i in range(min(naive_turns, len(turns)))]
naive = make_agent("hf", model=model, max_tokens=limit, dtype="float32")
tokens, seconds, same = 0, 0.0, 0
for messages, reply in sample:
    start = time.perf_counter()
    plain = naive.reply_plain(messages)
    seconds += time.perf_counter() - start
    tokens += plain.usage["completion_tokens"]
    same += plain.content == reply
naive.close()
result.update(naive_tokens_per_s=tokens / seconds, naive_turns=len(sample),
              replies_same_as_fp32_plain=f"{same}/{len(sample)}")
result["speedup"] = result["tokens_per_s"] / result["naive_tokens_per_s"]
print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))
