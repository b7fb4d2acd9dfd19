"""Expert (gold / scripted) runs of the held-out environments over their full task lists:
the score each reaches per task type and the time it takes. Not a test: ScienceWorld's 270
test episodes take ~20 minutes on one core.

    .venv/bin/python bench/heldout_experts.py --envs=sciworld,miniwob --limit=0
    .venv/bin/python bench/heldout_experts.py --envs=sciworld --sciworld_step_limit=1000
"""
import collections
import time

from agentune.config import configure  # noqa: E402
from agentune.envs import env_class  # noqa: E402

envs = "sciworld,miniwob"
limit = 0          # episodes per task type (0: all)
task_types = ""    # comma list of task types to run (default: all)
sciworld_step_limit = 100   # the protocol's; some gold paths need more simulator moves
config = configure(globals())

for env_name in envs.split(","):
    cls = env_class(env_name)
    tasks = cls.load_tasks()
    by_type = collections.defaultdict(list)
    for task in tasks:
        if not task_types or task.data["task_name"] in task_types.split(","):
            by_type[task.data["task_name"]].append(task)
    env = cls(step_limit=sciworld_step_limit) if env_name == "sciworld" else cls()
    results = collections.defaultdict(list)
    start = time.time()
    try:
        for task_name, group in by_type.items():
            t0 = time.time()
            for task in group[:limit or None]:
                env.reset(task)
                for _ in range(cls.max_turns):
                    step = env.step(env.expert_reply())
                    if step.done:
                        break
                results[task_name].append(step.reward)
                if step.reward < 1:
                    print(f"  {task.id}: reward {step.reward:.2f} ({step.finish})", flush=True)
            scores = results[task_name]
            print(f"{env_name} {task_name}: {100 * sum(scores) / len(scores):.1f} over {len(scores)} "
                  f"({(time.time() - t0) / len(scores):.1f}s an episode)", flush=True)
    finally:
        env.close()
    per_type = [100 * sum(s) / len(s) for s in results.values()]
    n = sum(len(s) for s in results.values())
    print(f"== {env_name}: expert score {sum(per_type) / len(per_type):.1f} (mean over {len(per_type)} task "
          f"types, {n} episodes, {time.time() - start:.0f}s); worst type {min(per_type):.1f}", flush=True)
