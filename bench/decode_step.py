"""One decode step of the hf agent (agentune.agents.HFAgent) at the shapes an agent eval runs:
`rows` conversations in flight, each with about `context` cached tokens (the ALFWorld std protocol
ends near 3,000), timed with each attention implementation side by side in one run:
  sdpa        transformers' own (the hf agent before this bench)
  cached_gqa  agentune.attention's, the hf agent's default, told that the rows share the first
              `shared` tokens (an eval's instruction and example: read once for all rows)
A step is one token for every row: milliseconds per step, and generated tokens per second.
The CPU may be shared with other jobs: only the ratios of one run mean much.
The last line printed is JSON: per shape the ms of each implementation, and `speedup` (geometric mean).
    python bench/decode_step.py --rows=8 --contexts=[1000,3000]
"""
import json
import math
import time

# -----------------------------------------------------------------------------
model = ""                 # HF model dir ('' = the base SmolLM2-135M-Instruct)
dtype = "auto"             # the hf agent's (auto: bf16 where the CPU has bf16 units)
rows = 8                   # conversations decoded together (05_eval.py's default workers)
contexts = [1000, 3000]    # cached tokens of the longest row; the others 50 tokens apart (rows end unevenly)
shared = 900               # leading tokens all rows share (ALFWorld std: instruction + one-shot example, ~900)
steps = 10                 # timed steps per shape and implementation (after one untimed)
rounds = 2                 # the implementations alternate this many times (noise shows as spread)
threads = 1                # torch threads (the evals run one core per model)
implementations = ["sdpa", "cached_gqa"]
# -----------------------------------------------------------------------------
from agentune.config import configure  # noqa: E402
config = configure(globals())

import torch  # noqa: E402

from agentune.agents import make_agent  # noqa: E402

torch.set_num_threads(threads)
agent = make_agent("hf", model=model, max_tokens=8, dtype=dtype)
result = {"rows": rows, "shared": shared, "threads": threads, "dtype": agent.describe()["dtype"], "shapes": {}}
for context in contexts:
    positions = torch.full((rows,), context) - 50 * torch.arange(rows)
    width = int(positions.max()) + 1
    mask = torch.arange(width)[None, :] <= positions[:, None]
    agent.cache.reserve(rows, width + 64)
    agent.cache.buf.normal_()  # keys/values of the right shape and scale; their values do not matter here
    agent.cache.buf[:, :, 1:, :, :, :shared] = agent.cache.buf[:, :, :1, :, :, :shared]

    def step():
        agent.cache.rows, agent.cache.pos, agent.cache.width = slice(0, rows), positions, width
        prefix = {"shared_prefix": shared} if agent.net.config._attn_implementation == "cached_gqa" else {}
        return agent._forward([[42]] * rows, positions[:, None], mask[:, None, None], **prefix)

    times = {name: [] for name in implementations}
    for _ in range(rounds):
        for name in implementations:
            agent.net.set_attn_implementation(name)
            step()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - start) / steps * 1000)
    shape = {name: round(min(t), 1) for name, t in times.items()}
    for name in implementations:
        print(f"rows {rows} context {context}: {name:12s} {shape[name]:7.1f} ms/step "
              f"({rows / shape[name] * 1000:6.1f} tokens/s; rounds {[round(t) for t in times[name]]})")
    result["shapes"][f"{rows}x{context}"] = shape
agent.close()
first, last = implementations[0], implementations[-1]
ratios = [s[first] / s[last] for s in result["shapes"].values()]
result["speedup"] = round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 2)
print(json.dumps(result))
