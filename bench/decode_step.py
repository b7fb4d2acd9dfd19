"""One decode step of the hf agent (agentune.agents.HFAgent._step) at the shapes an agent eval
runs: `rows` conversations in flight, the longest with about `context` cached tokens (the ALFWorld
std protocol ends near 3,000), each row checking `draft` drafted tokens after its last one (0: one
token per row), timed in one run for each variant, alternating:
  cached_gqa         agentune.attention's decode attention over the cache's whole capacity, read in place
  cached_gqa+packed  and the linears' weights pre-packed for oneDNN (the hf agent's default on a bf16 CPU)
Milliseconds per step; what drafting costs is the step's time with drafts over the one without (a
step gains a row one token plus the drafted ones greedy decoding keeps: bench/eval_throughput.py).
The CPU may be shared with other jobs: only the ratios of one run mean much.
The last line printed is JSON: per shape the ms of each variant, `speedup` (geometric mean of the
first variant's time over the last's) and `draft_cost` (per draft length, geometric mean of the last
variant's time over its time without drafts).
    python bench/decode_step.py --rows=8 --contexts=[1000,3000] --drafts=[0,4,8]
"""
import json
import math
import time
import types

# -----------------------------------------------------------------------------
model = ""                 # HF model dir ('' = the base SmolLM2-135M-Instruct)
dtype = "auto"             # the hf agent's (auto: bf16 where the CPU has bf16 units)
rows = 8                   # conversations decoded together (05_eval.py's default workers)
contexts = [1000, 3000]    # cached tokens of the longest row; the others 50 tokens apart (rows end unevenly)
drafts = [0, 4, 8]         # drafted tokens each row checks in a step
steps = 10                 # timed steps per shape and variant (after one untimed)
rounds = 2                 # the variants alternate this many times (noise shows as spread)
threads = 1                # torch threads (the evals run one core per model)
variants = ["cached_gqa", "cached_gqa+packed"]
# -----------------------------------------------------------------------------
from agentune.config import configure  # noqa: E402
config = configure(globals())

import torch  # noqa: E402

from agentune.agents import _Row, make_agent  # noqa: E402

torch.set_num_threads(threads)
agent = make_agent("hf", model=model, max_tokens=8, dtype=dtype)
drafted = 0
agent._draft = lambda row, room: [42] * drafted  # what the drafts say does not change a step's time
packed = {m: m.forward for m in agent.net.modules() if "forward" in vars(m)}  # pack_cpu_linears' doing


def use(variant):
    linears = variant.partition("+")[2]
    for module, forward in packed.items():
        if linears == "packed":
            module.forward = forward
        else:
            vars(module).pop("forward", None)


result = {"rows": rows, "threads": threads, "dtype": agent.describe()["dtype"],
          "packed_linears": len(packed), "shapes": {}}
if not packed:
    variants = [v for v in variants if not v.endswith("+packed")]
request = types.SimpleNamespace(ids=[], limit=10 ** 6)
for context in contexts:
    for drafted in drafts:
        lengths = [context - 50 * i for i in range(rows)]
        agent.cache.reserve(rows, context + steps * (drafted + 1) + 1)
        agent.cache.buf.normal_()  # keys/values of the right shape and scale; their values do not matter here
        times = {name: [] for name in variants}
        for _ in range(rounds):
            for name in variants:
                use(name)
                batch = [_Row(request=request, length=n, tokens=[42]) for n in lengths]
                agent._step(batch)
                start = time.perf_counter()
                for _ in range(steps):
                    agent._step(batch)
                times[name].append((time.perf_counter() - start) / steps * 1000)
        shape = {name: round(min(t), 1) for name, t in times.items()}
        for name in variants:
            print(f"rows {rows} context {context} draft {drafted}: {name:18s} {shape[name]:7.1f} ms/step "
                  f"(rounds {[round(t) for t in times[name]]})")
        result["shapes"][f"{rows}x{context}+{drafted}"] = shape
agent.close()
first, last = variants[0], variants[-1]


def mean_ratio(pairs):
    ratios = [a / b for a, b in pairs]
    return round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 2)


shapes = result["shapes"]
result["speedup"] = mean_ratio((s[first], s[last]) for s in shapes.values())
if 0 in drafts:
    result["draft_cost"] = {d: mean_ratio((shapes[f"{rows}x{c}+{d}"][last], shapes[f"{rows}x{c}+0"][last])
                                          for c in contexts) for d in drafts}
print(json.dumps(result))
