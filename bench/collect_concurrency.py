"""Collection throughput: episodes/s on the db env with 1 vs 16 concurrent workers, against a
local OpenAI-compatible server that answers every request after a fixed delay (standing in for
a remote teacher's latency). Each episode is two LLM calls: one SQL operation, then an answer.
Target: speedup >= 12x (16x is the ideal; the rest is env, HTTP and Python overhead).
The last line printed is JSON with both rates and the speedup.
"""
import json
import os
import tempfile


# -----------------------------------------------------------------------------
delay_s = 0.2          # the server's answer latency per request
workers = 16
episodes_serial = 20   # episodes timed with 1 worker
rounds = 10            # episodes timed with `workers` workers = rounds * workers
# -----------------------------------------------------------------------------
from agentune.config import configure  # noqa: E402
config = configure(globals())

from agentune.chat_server import ChatServer  # noqa: E402

from agentune.agents import make_agent  # noqa: E402
from agentune.envs import env_class  # noqa: E402
from agentune.envs.base import Task  # noqa: E402
from agentune.rollout import run_episodes  # noqa: E402


def db_teacher(messages):
    """A valid DBBench reply: first one SQL operation, then (after its result) an answer."""
    if any(m["role"] == "assistant" and "Action: Operation" in m["content"] for m in messages):
        return "The query returned the count.\nAction: Answer\nFinal Answer: [\"1\"]"
    return "I will count the rows first.\nAction: Operation\n```sql\nSELECT 1;\n```"


dev = env_class("db").load_tasks()
# distinct copies of the dev tasks, so that every run is a full set of rounds of fresh ids
tasks = [Task(f"{t.id}-copy{k}", t.prompt, t.data) for k in range(20) for t in dev]
rates = {}
with ChatServer(reply_fn=db_teacher, delay_s=delay_s) as server, tempfile.TemporaryDirectory() as tmp:
    agent = make_agent("openai", model="bench", base_url=server.url)
    for n_workers, n_episodes in ((1, episodes_serial), (workers, rounds * workers)):
        summary = run_episodes("db", tasks[:n_episodes], agent, os.path.join(tmp, f"w{n_workers}.jsonl"),
                               workers=n_workers, desc=f"{n_workers} workers")
        assert summary["new"] == n_episodes and summary["finish"] == {"answered": n_episodes}, summary
        rates[n_workers] = summary["episodes_per_s"]

speedup = rates[workers] / rates[1]
print(f"1 worker: {rates[1]:.2f} episodes/s; {workers} workers: {rates[workers]:.2f} episodes/s; "
      f"speedup {speedup:.1f}x (target >= 12x, ideal {workers}x)")
print(json.dumps({"delay_s": delay_s, "workers": workers, "episodes_per_s_1": round(rates[1], 3),
                  f"episodes_per_s_{workers}": round(rates[workers], 3), "speedup": round(speedup, 2)}))
