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

Writes to out_dir: os_tasks.json (AgentBench OS task list) and db_tasks.jsonl (DBBench records),
each task with its provenance; report.json (counts per reason, every rejected candidate and why);
candidates.jsonl (every candidate with the teacher's reply); config.json.

    python 00_instruct.py --base_url=http://localhost:8000/v1 --model=Llama-2-70b-chat --n=500
    python 00_instruct.py --agent=hf --n=2 --max_tokens=512      # offline smoke run: the base model
    python 01_collect.py --env=os --tasks=data/instruct/os_tasks.json --agent=openai --model=...
    python 01_collect.py --env=db --tasks=data/instruct/db_tasks.jsonl --agent=openai --model=...
"""
import json
import os
from collections import Counter

from agentune.paths import data_path

# -----------------------------------------------------------------------------
env = ["os", "db"]           # environments to make tasks for (--env=db)
n = 100                      # candidate tasks per env (one teacher call each)
agent = "openai"             # openai (an OpenAI-compatible endpoint) | hf (a local checkpoint in-process)
model = ""                   # openai: the model name the endpoint serves; hf: a checkpoint dir ('' = base model)
base_url = ""                # openai: the endpoint ('' = $OPENAI_BASE_URL, else api.openai.com with $OPENAI_API_KEY)
temperature = 0.7            # sampling: diverse proposals
top_p = 0.95
max_tokens = 2048            # per proposal (a DB task carries its table)
seed = 0                     # draws each candidate's topic, difficulty, DB type and examples
n_shots = 2                  # dev tasks shown as examples in each prompt
workers = 4                  # concurrent teacher calls, then concurrent validations
env_kwargs = {}              # per env: constructor settings, e.g. {"db": {"backend": "mysql", "port": 3306}}
# decontamination, as 02_filter.py: drop a task with >= decontam_overlap of an eval task's
# decontam_n-grams (the evaluation sets: env:split names or task files)
eval_tasks = ["os:std", "db:std", data_path("gsm8k", "test.jsonl")]
decontam_n = 13
decontam_overlap = 0.5
# near-duplicates: >= dedup_overlap of a dev task's or an already kept task's dedup_n-grams
dedup_n = 8
dedup_overlap = 0.5
out_dir = "data/instruct"
# -----------------------------------------------------------------------------
from agentune.config import configure, save_config  # noqa: E402
config = configure(globals())

from agentune.agents import make_agent  # noqa: E402
from agentune.decontam import eval_index  # noqa: E402
from agentune.instruct import PROMPT_VERSION, REASONS, construct, task_record  # noqa: E402
from agentune.records import write_jsonl  # noqa: E402

OUTPUT = {"os": "os_tasks.json", "db": "db_tasks.jsonl"}
unknown = [e for e in env if e not in OUTPUT]
if unknown:
    raise SystemExit(f"--env: no task generation for {', '.join(unknown)}; use os and/or db "
                     f"(ALFWorld's tasks come from its training games)")
if agent not in ("openai", "hf"):
    raise SystemExit(f"--agent={agent}: the teacher is an openai endpoint or an hf checkpoint")

index, eval_counts = eval_index(eval_tasks, decontam_n)
print(f"decontamination: {len(index.tasks)} eval tasks: " + ", ".join(f"{s} {k}" for s, k in eval_counts.items()))

os.makedirs(out_dir, exist_ok=True)
save_config(config, os.path.join(out_dir, "config.json"))
teacher = make_agent(agent, model=model, base_url=base_url, temperature=temperature, top_p=top_p,
                     max_tokens=max_tokens)
provenance = {"teacher": teacher.describe(), "prompt_version": PROMPT_VERSION, "seed": seed}
results = {}
try:
    for name in env:
        results[name] = construct(name, teacher, n, seed, index, decontam_overlap, dedup_n, dedup_overlap,
                                  n_shots, workers, env_kwargs.get(name))
finally:
    teacher.close()

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
