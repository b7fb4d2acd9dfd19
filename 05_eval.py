"""Stage 05: evaluate one model on held-in (os, db, alfworld), held-out (sciworld, miniwob) and
general (gsm8k, humaneval, multiple-choice sets such as MMLU) tasks, with the paper's Overall score.

Every task runs through the same loop as 01_collect.py (agentune.rollout); the general tasks are
one-turn environments.

    python 05_eval.py --model=out/train/final --limit=50                  # a checkpoint, in-process
    python 05_eval.py --agent=openai --model=agentlm --base_url=http://localhost:8000/v1
    python 05_eval.py --agent=expert --tasks=db,gsm8k,humaneval --limit=5  # reference answers

Writes to out_dir (default out/eval): episodes/<task>.jsonl (appended as episodes finish, so a
rerun with the same out_dir resumes), results.json (scores, Overall, error analysis), results.md
(tasks x models table, with --compare runs and the paper's models), results.png (bar chart) and
config.json (the resolved settings).
"""
import datetime
import json
import os

from agentune import scoring
from agentune.agents import make_agent
from agentune.config import check, configure, save_config
from agentune.envs import ENVS, env_class
from agentune.records import read_jsonl
from agentune.rollout import run_episodes

# -----------------------------------------------------------------------------
# settings: each one can be overridden as --name=value (--help lists them with these comments)
# --- what to evaluate
model = ""            # HF model dir ('' = the base SmolLM2-135M-Instruct); for openai: the served name
agent = "hf"          # hf (in-process, batched) | openai (OpenAI-compatible endpoint) | expert (gold)
base_url = ""         # openai agent: e.g. http://localhost:8000/v1 (vLLM)
label = ""            # this run's name in the tables ('' = the model's dir name, or 'expert')
tasks = "os,db,alfworld,sciworld,miniwob,hotpotqa,dcg,gsm8k,humaneval,mmlu,mtbench"  # + mc_files names
limit = 0             # episodes per task, an evenly spread subset of its tasks (0 = all)
workers = 8           # concurrent episodes per task
out_dir = "out/eval"  # episodes/, results.json, results.md, results.png, config.json
# --- generation
temperature = 0.0     # greedy: pass@1 and exact match as the papers report them
max_tokens = 512      # new tokens per reply, capped by each task's upstream limit (AgentBench 128,
                      # ScienceWorld 256) unless upstream_reply_limits is False
upstream_reply_limits = True  # cap max_tokens by each task's upstream limit (False: max_tokens everywhere)
hf_dtype = "auto"     # hf agent: auto (bf16 where the CPU/GPU computes it fast; replies can differ from
                      # fp32's) | float32 (replies identical to plain fp32 greedy decoding) | bfloat16
hf_draft = 4          # hf agent, greedy: tokens drafted per reply and decode step from the conversation
                      # (prompt lookup), kept only where greedy decoding picks them; 0 = none
max_turns = 0         # agent replies per episode; 0 = each env's own limit (AgentBench's). Lower only
                      # for quick smoke runs: scores are then not comparable to the paper's
# --- data: evaluation splits only, never what 01_collect.py collects from. Held-in: AgentBench's
# std test sets, as AgentTuning evaluated (os: data/1-7, 144 tasks; db: standard.jsonl, 300;
# alfworld: std.json, 50 valid_unseen games)
task_splits = {"os": "std", "db": "std", "alfworld": "std", "sciworld": "test",
               "miniwob": None, "gsm8k": "test", "humaneval": None,
               "hotpotqa": "all", "dcg": "std", "mmlu": "test", "mtbench": None}
task_paths = {}       # task -> a task file or dir instead of the default public data
env_options = {}      # task -> extra env constructor options, e.g. {"db": {"backend": "mysql"}}
mc_files = {}         # multiple-choice sets: name -> HF-style JSONL, e.g. {"mmlu": "mmlu_test.jsonl"}
mc_shots = 0          # the first k records of an mc file become few-shot examples (and are not scored)
gsm8k_shots = 5       # few-shot worked examples from GSM8K train (short prompt for a 135M model)
humaneval_timeout = 10.0  # seconds per program in the sandbox
mmlu_shots = 5        # MMLU: the subject's first k dev questions as examples (the paper: 5)
judge_model = ""      # MT-Bench: the judge model (the paper: gpt-4); '' = mtbench is skipped
judge_base_url = ""   # its OpenAI-compatible endpoint ('' = api.openai.com with OPENAI_API_KEY)
# --- scoring
baseline_scores = scoring.paper_baselines()  # task -> Overall divisor: the paper's five-model average
baseline = ""         # results.json of a base-model run: the divisor for tasks baseline_scores lacks
compare = ""          # more results.json files (comma list) shown next to this run in table and chart
short_repeat = 3      # error analysis: the same action this many times in a row
long_repeat = 5       # ... or this many times in one episode (or a cycle of actions repeated 3 times)
# -----------------------------------------------------------------------------
config = configure(globals())


# -----------------------------------------------------------------------------
# check every setting before anything is written: every task is loaded here, and the model
def spread(items, n):
    """n items spread evenly over the list (so a small --limit still covers every task type);
    tasks with a subject (MMLU) are spread evenly over the subjects first."""
    if not n or n >= len(items):
        return items
    subjects = {}
    for item in items:
        subjects.setdefault(getattr(item, "data", {}).get("subject"), []).append(item)
    if len(subjects) > 1 and None not in subjects:
        names = list(subjects)
        share = dict.fromkeys(names, n // len(names))
        for s in spread(names, n % len(names)) if n % len(names) else []:
            share[s] += 1
        return [item for s in names if share[s] for item in spread(subjects[s], share[s])]
    return [items[i * len(items) // n] for i in range(n)]


def prepare(task):
    """(env name, group, tasks to run, env constructor options) of one evaluation task."""
    if task in mc_files:
        task_list = env_class("mc").load_tasks(mc_files[task])
        examples = [t.data for t in task_list[:mc_shots]]
        task_sets[task] = {"set": mc_files[task], "set_size": len(task_list) - mc_shots}
        return "mc", "general", spread(task_list[mc_shots:], limit), {"examples": examples, **env_options.get(task, {})}
    check(task in ENVS and task != "mc", f"--tasks: unknown task {task!r}; known: {', '.join(n for n in ENVS if n != 'mc')}"
          f"{', ' + ', '.join(mc_files) if mc_files else ''} (multiple-choice sets go in --mc_files)")
    check(task in scoring.TASK_GROUPS, f"{task}: no group for the Overall score: add it to TASK_GROUPS in agentune/scoring.py")
    options = {"gsm8k": {"shots": gsm8k_shots}, "humaneval": {"timeout": humaneval_timeout},
               "mmlu": {"shots": mmlu_shots},
               "mtbench": {"judge_model": judge_model, "judge_base_url": judge_base_url}}.get(task, {})
    # a task file or dir given for a task means every task in it (no split)
    path = task_paths.get(task)
    task_list = env_class(task).load_tasks(path, None if path else task_splits.get(task))
    task_sets[task] = {"set": path or f"{task}:{task_splits.get(task) or 'default'}", "set_size": len(task_list)}
    return task, scoring.TASK_GROUPS[task], spread(task_list, limit), {**options, **env_options.get(task, {})}


task_sets = {}         # task -> the set it was drawn from and that set's size
task_names = [t.strip() for t in tasks.split(",") if t.strip()]
check(task_names, "--tasks is empty")
check(limit >= 0 and max_turns >= 0 and mc_shots >= 0, f"--limit={limit}, --max_turns={max_turns}, "
      f"--mc_shots={mc_shots}: 0 or more")
check(workers >= 1, f"--workers={workers}: at least 1")
for name, value in (("task_paths", task_paths), ("env_options", env_options), ("task_splits", task_splits)):
    unknown = sorted(set(value) - set(ENVS) - set(mc_files))
    check(not unknown, f"--{name}: {', '.join(unknown)} is not a task; known: {', '.join(ENVS)}, --mc_files names")
for path in [baseline] + [p for p in compare.split(",") if p]:
    check(not path or os.path.isfile(path), f"--baseline/--compare: {path}: no such results.json")
if "mtbench" in task_names and not judge_model:
    print("mtbench: skipped: no judge (pass --judge_model and --judge_base_url of an "
          "OpenAI-compatible endpoint; the model never judges itself)")
    task_names.remove("mtbench")
prepared = {task: prepare(task) for task in task_names}
agent_obj = make_agent(agent, model=model, base_url=base_url, temperature=temperature, max_tokens=max_tokens,
                       **({"dtype": hf_dtype, "draft": hf_draft} if agent == "hf" else {}))
agent_info = agent_obj.describe()
if not label:
    label = os.path.basename(os.path.normpath(model)) if model else ("expert" if agent == "expert" else agent_info["model"])
base_run = scoring.load_results(baseline) if baseline else None
compare_runs = [scoring.load_results(p) for p in compare.split(",") if p]
save_config(config, os.path.join(out_dir, "config.json"))  # the first write: makes out_dir

# -----------------------------------------------------------------------------
# run and score each task (episodes appended to <out_dir>/episodes/<task>.jsonl as they finish)
results = {"label": label, "model": agent_info["model"] or label, "agent": agent_info,
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "limit": limit, "tasks": {}, "overall": {}}
try:
    for task in task_names:
        env_name, group, task_list, options = prepared[task]
        episodes_path = os.path.join(out_dir, "episodes", f"{task}.jsonl")
        # Ctrl-C ends the run here (SystemExit) with the finished episodes kept: rerun to resume
        reply_limit = env_class(env_name).max_reply_tokens if upstream_reply_limits else None
        agent_obj.sampling["max_tokens"] = min(max_tokens, reply_limit or max_tokens)
        run_episodes(env_name, task_list, agent_obj, episodes_path, workers=workers,
                     env_kwargs=options, desc=task, max_turns=max_turns or None)
        # score exactly this selection (a file may hold more from an earlier, larger --limit)
        wanted = {t.id for t in task_list}
        records = [r for _, r in read_jsonl(episodes_path) if r["task_id"] in wanted]
        if task in baseline_scores:
            divisor, source = baseline_scores[task], "baseline_scores (paper five-model average)"
        elif base_run and task in base_run["tasks"]:
            divisor, source = base_run["tasks"][task]["score"], f"base run {baseline}"
        else:
            divisor, source = None, None
        ci_low, ci_high = scoring.score_interval(records)
        results["tasks"][task] = {
            "score": scoring.task_score(records), "n": len(records), "ci_low": ci_low, "ci_high": ci_high,
            "missing": len(wanted) - len(records), **task_sets[task],
            "max_reply_tokens": agent_obj.sampling["max_tokens"],
            # broken tasks (e.g. a DBBench table that cannot load): scored 0 and listed
            "task_errors": [{"task_id": r["task_id"], "error": r.get("error", "")}
                            for r in records if r["finish"] == "task_error"],
            "group": group, "split": task_splits.get(task), "env": env_name,
            "errors": scoring.error_analysis(records, short_repeat, long_repeat),
            "baseline": divisor, "baseline_source": source}
        if hasattr(env_class(env_name), "breakdown"):  # e.g. MMLU: accuracy per subject and category
            results["tasks"][task]["breakdown"] = env_class(env_name).breakdown(records)
finally:
    agent_obj.close()

scores = {t: v["score"] for t, v in results["tasks"].items()}
divisors = {t: v["baseline"] for t, v in results["tasks"].items()}
groups = {t: v["group"] for t, v in results["tasks"].items()}
overall = scoring.overall(scores, divisors, groups)
results["overall"] = {g: overall.get(g) for g in scoring.GROUPS}  # None: no task of the group ran
results["overall_tasks"] = {g: [t for t in scores if groups[t] == g and scores[t] is not None and divisors[t]]
                            for g in overall}
no_divisor = [t for t in scores if not divisors[t]]
results["config"] = config

# -----------------------------------------------------------------------------
# write results.json, results.md and results.png; print the table
with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, default=str)
    f.write("\n")

runs = [results] + compare_runs
table_baselines = {**baseline_scores, **{t: d for t, d in divisors.items() if d}}
scoring.write_report(os.path.join(out_dir, "results.md"), runs, table_baselines)
scoring.write_chart(os.path.join(out_dir, "results.png"), runs, table_baselines)

print()
print(scoring.markdown_table(runs, table_baselines))
print()
for task, v in results["tasks"].items():
    score = "none" if v["score"] is None else f"{v['score']:.1f}"
    missing = f" ({v['missing']} missing)" if v["missing"] else ""
    errors = ", ".join(f"{k} {c}" for k, c in v["errors"].items() if c and k != "failed") or "none"
    interval = "" if v["ci_low"] is None else f" (95% CI {v['ci_low']:.1f}-{v['ci_high']:.1f})"
    print(f"{task:>10}: score {score}{interval} over {v['n']} episodes of {v['set']} "
          f"({v['set_size']} tasks){missing}; errors: {errors}")
    for bad in v["task_errors"]:
        print(" " * 12 + f"task_error {bad['task_id']}: {bad['error']}")
    if v.get("breakdown", {}).get("categories"):
        print(" " * 12 + "by category: " + ", ".join(f"{k} {x:.1f}" for k, x in v["breakdown"]["categories"].items()))
if no_divisor:
    print(f"no Overall divisor for {', '.join(no_divisor)}: add it to --baseline_scores or pass "
          f"--baseline=<base model results.json>")
print("overall: " + (", ".join(f"{g} {x:.2f}" for g, x in overall.items()) or "none"))
print(f"results: {out_dir}/results.json, {out_dir}/results.md, {out_dir}/results.png; "
      f"episodes: {out_dir}/episodes/")
