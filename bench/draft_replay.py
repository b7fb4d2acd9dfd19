"""What drafting (prompt lookup, agentune.agents.HFAgent._draft) buys the hf agent, on the same work.

Played episodes differ from run to run in bf16 (a reply can change with the batch's shape), so two
runs of bench/eval_throughput.py do not generate the same tokens. This bench replays recorded
episodes instead: every assistant turn of the first `games` episodes of `episodes` (a JSONL of
01_collect/05_eval/eval_throughput records) is asked of the agent again with the conversation as
recorded, `workers` episodes at once, each episode's turns in order (so its cache carries over
between turns as in an eval). Each setting of `drafts` (the agent's `draft`: 0 = none) replays
the same turns; the settings alternate for `rounds` rounds in one process, on one model.
Rates are generated tokens per second of generation (busy time).
A turn the agent cannot answer (e.g. over the model's context) is skipped and counted.
The last line printed is JSON: per draft setting tokens/s, decode steps, tokens per step, the share
of drafted tokens kept, `query_efficiency` (tokens fed over the queries the decode attention laid
out: rows are padded to the row with most new tokens) and skipped turns, and `speedup` (the last
setting's tokens/s over the first's).
    python bench/eval_throughput.py --episodes=runs/bench/alfworld_std.jsonl
    python bench/draft_replay.py --episodes=runs/bench/alfworld_std.jsonl --games=16
"""
import json
import time
from concurrent.futures import ThreadPoolExecutor

# -----------------------------------------------------------------------------
episodes = ""          # the recorded episodes (JSONL with "messages")
games = 16             # replay the first this many episodes
model = ""             # HF model dir ('' = the base SmolLM2-135M-Instruct): the one that played them
max_tokens = 128       # per reply (AgentBench's ALFWorld limit)
workers = 8            # episodes replayed at once
dtype = "auto"         # the agent's (auto: bf16 where the CPU has bf16 units, else fp32)
drafts = [0, 4]        # the agent's draft settings compared
rounds = 2             # the settings alternate this many times (noise shows as spread)
threads = 0            # torch threads (0 = torch's default)
# -----------------------------------------------------------------------------
from agentune.config import configure  # noqa: E402
config = configure(globals())

import torch  # noqa: E402

from agentune.agents import ContextLimit, LLMError, generation_rates, make_agent  # noqa: E402
from agentune.records import read_jsonl  # noqa: E402

if not episodes:
    raise SystemExit("--episodes: a JSONL of played episodes is needed (bench/eval_throughput.py --episodes=PATH writes one)")
if threads:
    torch.set_num_threads(threads)
conversations = [r["messages"] for _, r in read_jsonl(episodes)][:games]
turns = sum(m["role"] == "assistant" for messages in conversations for m in messages)
agent = make_agent("hf", model=model, max_tokens=max_tokens, dtype=dtype)


def replay(messages):
    """Ask every assistant turn of one episode again, in order; how many the agent could not answer."""
    agent.start_episode()
    skipped = 0
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            try:
                agent.reply(messages[:i])
            except (ContextLimit, LLMError) as e:
                print(f"skipped a turn: {e}")
                skipped += 1
    return skipped


runs = {draft: [] for draft in drafts}
for round_ in range(rounds):
    for draft in drafts:
        agent.draft, agent.prefixes = draft, []  # no prompt cached from the setting before
        agent.stats = dict.fromkeys(agent.stats, 0)
        start = time.time()
        with ThreadPoolExecutor(workers) as pool:
            skipped = sum(pool.map(replay, conversations))
        stats = dict(agent.stats, wall_s=time.time() - start, skipped=skipped)
        runs[draft].append(stats)
        print(f"round {round_ + 1} draft {draft}: {stats['generated']} tokens in {stats['busy_s']:.1f} s "
              f"({generation_rates(stats)['tokens_per_s']:.2f} tokens/s), {stats['steps']} decode steps, "
              f"drafted {stats['drafted']}, kept {stats['accepted']}")
agent.close()
result = {"games": len(conversations), "turns": turns, "workers": workers, "dtype": agent.describe()["dtype"],
          "threads": torch.get_num_threads(), "settings": {}}
for draft, stats in runs.items():
    rates = [generation_rates(s) for s in stats]
    best = max(range(len(stats)), key=lambda i: rates[i]["tokens_per_s"])
    result["settings"][draft] = {
        **{name: round(rate, 2) for name, rate in rates[best].items() if name != "cache_read_efficiency"},
        "tokens_per_s_rounds": [round(r["tokens_per_s"], 2) for r in rates],
        "generated_tokens": stats[best]["generated"], "decode_steps": stats[best]["steps"],
        "skipped_turns": stats[best]["skipped"]}
first, last = (result["settings"][d]["tokens_per_s"] for d in (drafts[0], drafts[-1]))
result["speedup"] = round(last / first, 2)
print(json.dumps(result))
