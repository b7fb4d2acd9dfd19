"""Stage 00: instruction construction by self-instruct (AgentTuning's first step).

A teacher (any OpenAI-compatible endpoint, or a local checkpoint) proposes `n` tasks per
environment in the environment's own task format, one call per task, each prompt seeded for
diversity (a topic, a difficulty, for DB a task type, and dev tasks as examples). A task is kept
only if it checks out in the real environment: OS tasks on fresh sandboxes (init runs cleanly, the
example solution passes the task's own check, a wrong answer fails it), DB tasks on fresh
databases (the table loads, the gold SQL runs, a query answers something, a modification changes
the table), and the expert solves it as 01_collect.py will run it. Kept tasks are deduplicated
(exact and near) and decontaminated against the evaluation sets (02_filter.py's 13-gram rule).
Rejection reasons: agentune/instruct.py.

    python 00_instruct.py --base_url=http://localhost:8000/v1 --model=Llama-2-70b-chat --n=500
    python 00_instruct.py --agent=hf --n=2 --max_tokens=512      # offline smoke run: the base model
    python 00_instruct.py --env=db --agent=template --n=400       # offline: DB tasks from the dev tables
    python 01_collect.py --env=os --tasks=data/instruct/os_tasks.json --agent=openai --model=...
    python 01_collect.py --env=db --tasks=data/instruct/db_tasks.jsonl --agent=openai --model=...

Writes to out_dir (default data/instruct): os_tasks.json (AgentBench OS task list) and
db_tasks.jsonl (DBBench records), each task with its provenance; report.json (counts per reason,
every rejected candidate and why); candidates.jsonl (every candidate with the teacher's reply);
config.json (the resolved settings).
"""
import json
import os
from collections import Counter

from agentune.agents import make_agent
from agentune.config import check, configure, save_config
from agentune.decontam import eval_index
from agentune.derive import TemplateTeacher
from agentune.envs import env_class
from agentune.instruct import PROMPT_VERSION, REASONS, construct, task_record
from agentune.paths import data_path
from agentune.records import write_jsonl

# -----------------------------------------------------------------------------
# settings: each one can be overridden as --name=value (--help lists them with these comments)
env = ["os", "db"]           # environments to make tasks for (--env=db)
n = 100                      # candidate tasks per env (one teacher call each)
agent = "openai"             # openai (an OpenAI-compatible endpoint) | hf (a local checkpoint in-process)
                             # | template (db only: tasks written from the dev tables, no LLM; agentune/derive.py)
model = ""                   # openai: the model name the endpoint serves; hf: a checkpoint dir ('' = base model)
base_url = ""                # openai: the endpoint ('' = $OPENAI_BASE_URL, else api.openai.com with $OPENAI_API_KEY)
temperature = 0.7            # sampling: diverse proposals
top_p = 0.95                 # nucleus sampling of the proposals
max_tokens = 2048            # per proposal (a DB task carries its table)
seed = 0                     # draws each candidate's topic, difficulty, DB type and examples
n_shots = 2                  # dev tasks shown as examples in each prompt
workers = 4                  # concurrent teacher calls, then concurrent validations
env_kwargs = {}              # per env: constructor settings, e.g. {"db": {"backend": "mysql", "port": 3306}}
# decontamination, as 02_filter.py: drop a task with >= decontam_overlap of an eval task's
# decontam_n-grams (the evaluation sets: env:split names or task files)
eval_tasks = ["os:std", "db:std", data_path("gsm8k", "test.jsonl")]
decontam_n = 13              # word n-grams of the decontamination (13 as in GPT-3's)
decontam_overlap = 0.5       # drop a task holding this share of an eval task's n-grams
dedup_n = 8                  # near-duplicates: word n-grams compared with dev tasks and kept tasks
dedup_overlap = 0.5          # drop a task holding this share of a dev or kept task's dedup_n-grams
out_dir = "data/instruct"    # the task files, report.json, candidates.jsonl, config.json
# -----------------------------------------------------------------------------
config = configure(globals())

# -----------------------------------------------------------------------------
# check every setting before anything is written
OUTPUT = {"os": "os_tasks.json", "db": "db_tasks.jsonl"}   # the task file of each env, in its benchmark's format
check(not [e for e in env if e not in OUTPUT], f"--env={','.join(env)}: tasks are made for os and/or db only "
      f"(ALFWorld's tasks come from its training games)")
check(agent in ("openai", "hf", "template"),
      f"--agent={agent}: the teacher is an openai endpoint, an hf checkpoint or the DB templates")
check(agent != "template" or env == ["db"], f"--agent=template --env={','.join(env)}: the templates write DB tasks "
      f"only (--env=db)")
check(n >= 1, f"--n={n}: at least one candidate per env")
check(workers >= 1, f"--workers={workers}: at least 1")
check(n_shots >= 0, f"--n_shots={n_shots}: 0 or more examples")
check(decontam_n >= 1 and dedup_n >= 1, f"--decontam_n={decontam_n}, --dedup_n={dedup_n}: n-grams of at least 1 word")
check(0 < decontam_overlap <= 1, f"--decontam_overlap={decontam_overlap}: a share in (0, 1]")
check(0 < dedup_overlap <= 1, f"--dedup_overlap={dedup_overlap}: a share in (0, 1]")
check(set(env_kwargs) <= set(OUTPUT), f"--env_kwargs: {', '.join(sorted(set(env_kwargs) - set(OUTPUT)))} "
      f"is not os or db")
index, eval_counts = eval_index(eval_tasks, decontam_n)   # a missing eval set fails here
print(f"decontamination: {len(index.tasks)} eval tasks: " + ", ".join(f"{s} {k}" for s, k in eval_counts.items()))
if agent == "template":
    teacher = TemplateTeacher([t.data for t in env_class("db").load_tasks(split="dev")
                               if not t.data.get("task_error")], seed)
else:
    teacher = make_agent(agent, model=model, base_url=base_url, temperature=temperature, top_p=top_p,
                         max_tokens=max_tokens)            # hf: the checkpoint loads (or fails) here
save_config(config, os.path.join(out_dir, "config.json"))  # the first write: makes out_dir

# -----------------------------------------------------------------------------
# propose and validate the candidates of each env
provenance = {"teacher": teacher.describe(), "prompt_version": PROMPT_VERSION, "seed": seed}
results = {}
try:
    for name in env:
        results[name] = construct(name, teacher, n, seed, index, decontam_overlap, dedup_n, dedup_overlap,
                                  n_shots, workers, env_kwargs.get(name))
finally:
    teacher.close()

# -----------------------------------------------------------------------------
# write the kept tasks, the report and every candidate; print the summary
report = {"eval_tasks": eval_counts, "provenance": provenance, "per_env": {}, "rejected": []}
for name, candidates in results.items():
    kept = [task_record(c, provenance) for c in candidates if c.reason is None]
    path = os.path.join(out_dir, OUTPUT[name])
    if name == "os":
        with open(path, "w", encoding="utf-8") as f:
            json.dump(kept, f, indent=1, ensure_ascii=False)
            f.write("\n")
    else:
        write_jsonl(path, kept)
    reasons = Counter(c.reason for c in candidates if c.reason)
    report["per_env"][name] = {"candidates": len(candidates), "kept": len(kept), "file": path,
                               "rejected": {r: reasons[r] for r in REASONS if reasons[r]}}
    report["rejected"] += [{"env": name, "candidate": c.index, "topic": c.topic, "difficulty": c.difficulty,
                            "type": c.kind, "reason": c.reason, "detail": c.detail} for c in candidates if c.reason]
with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1, ensure_ascii=False)
    f.write("\n")
write_jsonl(os.path.join(out_dir, "candidates.jsonl"),
            ({"env": c.env, "candidate": c.index, "topic": c.topic, "difficulty": c.difficulty, "type": c.kind,
              "reason": c.reason, "detail": c.detail, "reply": c.reply}
             for candidates in results.values() for c in candidates))

print(f"\n{'env':<4} {'candidates':>10} {'kept':>5}  rejected")
for name, s in report["per_env"].items():
    print(f"{name:<4} {s['candidates']:>10} {s['kept']:>5}  " + (", ".join(f"{r} {k}" for r, k in s["rejected"].items()) or "-"))
for name, s in report["per_env"].items():
    print(f"{name}: {s['kept']} tasks -> {s['file']}  (python 01_collect.py --env={name} --tasks={s['file']})")
print(f"every rejected candidate and why: {os.path.join(out_dir, 'report.json')}")
