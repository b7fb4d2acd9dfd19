"""Stage 01: collect agent trajectories in real environments.

A teacher (any OpenAI-compatible endpoint), the tasks' reference solutions (the expert, the
offline default) or a local checkpoint acts as a ReAct agent in each environment; the
environment itself scores every episode. Rerunning skips the episodes already there; episodes
that ended in llm_error are retried.

    python 01_collect.py                                       # expert, all envs
    python 01_collect.py --env=db --agent=openai --model=gpt-4 --workers=16
    python 01_collect.py --agent=openai --base_url=http://localhost:8000/v1 --model=Llama-2-70b-chat
    python 01_collect.py --shard=3/8                           # slurm array task 3 of 8
    python 01_collect.py --env=alfworld --agent=explorer --seed=1 --out_dir=data/raw_seed1  # a searching teacher

Writes to out_dir (default data/raw): <env>.jsonl, one JSON line per finished episode (format:
data/README.md), and config.json (the resolved settings); with --shard=i/n,
<env>.shard<i>of<n>.jsonl and config.shard<i>of<n>.json.
"""
import os

from agentune.agents import make_agent
from agentune.config import check, configure, save_config
from agentune.envs import ENVS, env_class
from agentune.rollout import run_episodes, sample_tasks, shard_tasks

# -----------------------------------------------------------------------------
# settings: each one can be overridden as --name=value (--help lists them with these comments)
env = ["os", "db", "alfworld"]  # environments to collect in (--env=db, or --env=os,db)
tasks = ""                   # a task file or dir (with one --env): every task in it; "" = the split below
# per env: the split of the public tasks to collect from. Never a test set: AgentBench's std sets
# (os data/1-7, db standard.jsonl, alfworld std) are what 05_eval.py evaluates on
splits = {"os": "dev", "db": "dev", "alfworld": "train"}
env_kwargs = {}              # per env: constructor settings, e.g. {"db": {"backend": "mysql", "port": 3306}}
agent = "expert"             # expert (reference solutions) | explorer (searches from what it sees) | openai (a teacher endpoint) | hf (local)
model = ""                   # openai: the model name the endpoint serves; hf: a checkpoint dir ('' = base model)
base_url = ""                # openai: the endpoint ('' = $OPENAI_BASE_URL, else api.openai.com with $OPENAI_API_KEY)
temperature = 0.0            # sampling: greedy, the teacher's best reply
top_p = 1.0                  # nucleus sampling (1.0 = off)
max_tokens = 512             # per reply
seed = 0                     # explorer: its search order; hf: its sampling at temperature > 0 (another seed, other
                             # trajectories: use another out_dir)
hf_dtype = "auto"            # hf: auto (bf16 where the CPU/GPU computes it fast) | float32 (= plain fp32 greedy) | bfloat16
hf_draft = 4                 # hf, greedy: tokens drafted per decode step from the conversation (prompt lookup),
                             # kept only where greedy decoding picks them; 0 = none
workers = 8                  # concurrent episodes per environment
max_turns = 0                # agent replies per episode; 0 = each env's own limit (AgentBench's)
limit = 0                    # 0 = every task; N = N tasks of each env spread over its list (fixed seed; a larger N starts with a smaller one's)
shard = ""                   # "i/n" (i = 0..n-1): this job's share of each task list, for slurm arrays
out_dir = "data/raw"         # the episode files and config.json
# -----------------------------------------------------------------------------
config = configure(globals())


# -----------------------------------------------------------------------------
# check every setting before anything is written: the task lists are loaded here
def refuse_test_tasks(name, cls, task_list):
    """Collection must never draw from an evaluation set: refuse any task of the env's std test
    set (compared by what identifies a task: its text for os/db, its game for alfworld)."""
    if not cls.test_split:
        return
    test = {cls.task_key(t) for t in cls.load_tasks(None, cls.test_split)}
    clash = [t.id for t in task_list if cls.task_key(t) in test]
    if clash:
        raise SystemExit(f"{name}: {len(clash)} of the {len(task_list)} tasks to collect are in the "
                         f"{cls.test_split!r} test set (first: {clash[0]})\n  fix: collect from a "
                         f"training split (--splits) or a task file without evaluation tasks")


check(not tasks or len(env) == 1, f"--tasks={tasks} needs exactly one --env (got {', '.join(env)})")
check(workers >= 1, f"--workers={workers}: at least 1")
check(limit >= 0 and max_turns >= 0, f"--limit={limit}, --max_turns={max_turns}: 0 (no limit) or more")
for name, value in (("splits", splits), ("env_kwargs", env_kwargs)):
    check(set(value) <= set(ENVS), f"--{name}: {', '.join(sorted(set(value) - set(ENVS)))} is not an env; "
          f"known: {', '.join(ENVS)}")
shard_tasks([], shard)       # checks i/n
suffix = ".shard{}of{}".format(*shard.split("/")) if shard else ""
task_lists = {}
for name in env:
    cls = env_class(name)    # an unknown env fails here
    task_list = cls.load_tasks(tasks, None) if tasks else cls.load_tasks(None, splits.get(name))
    refuse_test_tasks(name, cls, task_list)
    task_lists[name] = shard_tasks(sample_tasks(task_list, limit), shard)
player = make_agent(agent, model=model, base_url=base_url,   # an unknown agent fails here; hf loads its checkpoint
                    temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                    **({"seed": seed} if agent in ("explorer", "hf") else {}),
                    **({"dtype": hf_dtype, "draft": hf_draft} if agent == "hf" else {}))
save_config(config, os.path.join(out_dir, f"config{suffix}.json"))  # the first write: makes out_dir

# -----------------------------------------------------------------------------
# run the episodes of each env (appended to <out_dir>/<env>.jsonl as they finish)
summaries = []
try:
    for name, task_list in task_lists.items():
        summaries.append(run_episodes(name, task_list, player, os.path.join(out_dir, f"{name}{suffix}.jsonl"),
                                      workers=workers, env_kwargs=env_kwargs.get(name),
                                      max_turns=max_turns or None))
finally:
    player.close()

# -----------------------------------------------------------------------------
# summary
print(f"\n{'env':<10} {'episodes':>8} {'success':>8} {'ep/s':>7}  finish")
for s in summaries:
    finishes = ", ".join(f"{k} {v}" for k, v in s["finish"].items())
    print(f"{s['env']:<10} {s['episodes']:>8} {s['success_rate']:>8.1%} {s['episodes_per_s']:>7.2f}  {finishes}")
print(f"episodes in {out_dir}/<env>{suffix}.jsonl")
