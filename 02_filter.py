"""Stage 02: keep the good trajectories (AgentTuning kept 1,866 of 35,341).

Reads the raw episode records that 01_collect.py writes (data/raw/<env>.jsonl), applies the rules
below in this order — finish, reward, format, repetition, contamination, length, then
deduplication — and keeps the survivors as training records. A dropped trajectory gets the first
rule it fails as its reason, with the detail (which turn, which eval task, how many tokens...).

    python 02_filter.py                                        # data/raw/*.jsonl -> data/filtered
    python 02_filter.py --inputs='data/raw/*.jsonl,data/raw_seed1/*.jsonl' --seq_len=2048
    python 02_filter.py --min_reward=0.0 --per_task=0          # every finished trajectory, all of a task's

Writes to out_dir (default data/filtered): agent.jsonl (the training records), report.json
(counts per env and rule, every dropped trajectory with its reason, the settings) and config.json
(the resolved settings).
"""
import json
import os
from collections import Counter, defaultdict

from tqdm import tqdm

from agentune.chat import encode
from agentune.config import check, configure, save_config
from agentune.decontam import eval_index, load_env
from agentune.envs import ENVS
from agentune.model import load_tokenizer
from agentune.paths import data_path
from agentune.records import DataError, agent_message_indices, expand_paths, read_jsonl, to_messages, write_jsonl
from agentune.rollout import FINISHES

# -----------------------------------------------------------------------------
# settings: each one can be overridden as --name=value (--help lists them with these comments)
inputs = ["data/raw/*.jsonl"]       # raw episode files (or globs) from 01_collect.py
out_dir = "data/filtered"           # agent.jsonl, report.json, config.json
# reward: rewards are in [0, 1]; 1.0 keeps only solved tasks. Envs with continuous rewards can get
# their own threshold, e.g. {"sciworld": 0.667} (the paper kept Mind2Web at >= 2/3)
min_reward = 1.0
min_reward_by_env = {}              # env -> its own min_reward, e.g. {"sciworld": 0.667}
# finish: only episodes that ended properly (the env judged a final answer / the game was won)
keep_finish = ["answered"]
# repetition: drop a trajectory that repeats the same action this many times in a row (0: off)
max_repeats = 3
# length: drop trajectories longer than this many tokens of the training tokenizer's chat
# rendering; keep it equal to 04_train.py's seq_len
seq_len = 4096
model = ""                          # the training model/tokenizer ('' = the default base model)
# deduplication: at most this many trajectories per task (best reward, then fewest turns; 0: no
# limit); exact duplicates (same messages) are always removed
per_task = 1
# decontamination: the evaluation tasks, each an env name with an optional split ("alfworld:valid_seen":
# that env's load_tasks; a bare name: its default tasks) or a task file or glob (JSON/JSONL with a
# prompt/question/description/instruction field). Default: what 05_eval.py evaluates on. ALFWorld
# is not in it: its goals are templates ("put a clean mug in coffeemachine") that repeat across
# splits by design, while collection (train games) and evaluation (valid_* games) never share a game
eval_tasks = ["os:std", "db:std", data_path("gsm8k", "test.jsonl")]
decontam_n = 13                     # word n-grams (13 as in GPT-3's decontamination)
decontam_overlap = 0.5              # drop when this share of an eval task's n-grams is in the task text
# -----------------------------------------------------------------------------
config = configure(globals())

# -----------------------------------------------------------------------------
# check every setting before anything is written
check(not set(keep_finish) - set(FINISHES), f"--keep_finish: {', '.join(sorted(set(keep_finish) - set(FINISHES)))} "
      f"is not a finish; known: {', '.join(FINISHES)}")
check(all(0 <= r <= 1 for r in [min_reward, *min_reward_by_env.values()]),
      f"--min_reward={min_reward}, --min_reward_by_env={min_reward_by_env}: rewards are in [0, 1]")
check(set(min_reward_by_env) <= set(ENVS), f"--min_reward_by_env: {', '.join(sorted(set(min_reward_by_env) - set(ENVS)))} "
      f"is not an env; known: {', '.join(ENVS)}")
check(max_repeats >= 0 and per_task >= 0, f"--max_repeats={max_repeats}, --per_task={per_task}: 0 (off) or more")
check(seq_len >= 1, f"--seq_len={seq_len}: at least 1 token")
check(decontam_n >= 1, f"--decontam_n={decontam_n}: n-grams of at least 1 word")
check(0 < decontam_overlap <= 1, f"--decontam_overlap={decontam_overlap}: a share in (0, 1]")
paths = expand_paths(inputs)                           # a missing input fails here
index, eval_counts = eval_index(eval_tasks, decontam_n)   # ... and a missing eval set here
print(f"decontamination: {len(index.tasks)} eval tasks ({decontam_n}-grams, drop at >= {decontam_overlap:.0%} "
      f"of an eval task's n-grams): " + ", ".join(f"{spec} {n}" for spec, n in eval_counts.items()))
save_config(config, os.path.join(out_dir, "config.json"))  # the first write: makes out_dir

# -----------------------------------------------------------------------------
# reading the episodes, and the rules (each returns None: keep, or the detail of why it drops)
RULES = ["finish", "reward", "format", "repetition", "contamination", "length", "duplicate", "per_task"]
REQUIRED = {"id": str, "env": str, "messages": list, "reward": (int, float), "finish": (str, type(None))}


def check_episode(record, where):
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise DataError(where, f"episode record without a valid {key!r}",
                            "give the raw episode records of 01_collect.py (format in data/README.md)")
    if record["env"] not in ENVS:
        raise DataError(where, f"unknown env {record['env']!r}", f"use one of {', '.join(ENVS)}")
    for i, m in enumerate(record["messages"]):
        if not (isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)):
            raise DataError(where, f"message {i} is not a {{role: system|user|assistant, content: str}} object")
    agent_message_indices(record, where)   # validates agent_messages / turns


def agent_replies(where, record):
    return [record["messages"][i]["content"] for i in agent_message_indices(record, where)]


def step_actions(where, record):
    """The action of each agent reply (None: not a valid action of its env). 01_collect.py
    recorded them as `steps` (valid_format, action), so no environment is needed; records
    without a step per reply are parsed with the env's parser."""
    steps, replies = record.get("steps") or [], agent_replies(where, record)
    if len(steps) == len(replies):
        return [step.get("action") if step.get("valid_format") else None for step in steps]
    parse = load_env(record["env"]).parse_action
    return [None if (parsed := parse(reply)) is None else json.dumps(parsed) for reply in replies]


def task_text(record):
    """The task as the agent saw it: the record's 'task' if given, else the user message just
    before the agent's first reply (every env prompt ends with the task)."""
    if record.get("task"):
        return record["task"]
    replies = agent_message_indices(record, "")
    before = record["messages"][:replies[0]] if replies else record["messages"]
    users = [m["content"] for m in before if m["role"] == "user"]
    return users[-1] if users else ""


def finish_rule(record):
    if record["finish"] not in keep_finish:
        error = f" ({record['error'].splitlines()[0]})" if record.get("error") else ""
        return f"finish={record['finish']}{error}, not one of {keep_finish}"


def reward_rule(record):
    threshold = min_reward_by_env.get(record["env"], min_reward)
    if record["reward"] < threshold:
        return f"reward {record['reward']:g} < {threshold:g}"


def format_rule(where, record, actions):
    for turn, action in enumerate(actions):
        if action is None:
            reply = agent_replies(where, record)[turn]
            return f"agent turn {turn + 1} is not a valid {record['env']} action: {reply[:120]!r}"


def repetition_rule(actions):
    run = 1
    for previous, action in zip(actions, actions[1:]):
        run = run + 1 if action == previous else 1
        if max_repeats and run >= max_repeats:
            return f"action {action!r} {run} times in a row"


def contamination_rule(record, index):
    share, i = index.best_match(task_text(record))
    if i is not None and share >= decontam_overlap:
        name, text = index.tasks[i]
        return f"{share:.0%} of the {decontam_n}-grams of eval task {name} ({text[:100]!r})"


def length_rule(where, record):
    global tokenizer
    if tokenizer is None:  # loaded only when some trajectory gets this far
        tokenizer = load_tokenizer(model)
    n_tokens = len(encode(tokenizer, training_messages(where, record), where)[0])
    if n_tokens > seq_len:
        return f"{n_tokens} tokens > seq_len {seq_len}"


def training_messages(where, record):
    """The conversation with loss on the agent's own replies only: never on the env's prompt,
    its one-shot example's assistant turns ("Ok.", the solved example) or the observations
    (to_messages reads an episode record that way)."""
    return to_messages(record, where)


def first_failure(where, record, index):
    """(rule, detail) of the first rule the trajectory fails, or None when it passes them all."""
    if (detail := finish_rule(record)) is not None:
        return "finish", detail
    if (detail := reward_rule(record)) is not None:
        return "reward", detail
    actions = step_actions(where, record)
    if (detail := format_rule(where, record, actions)) is not None:
        return "format", detail
    if (detail := repetition_rule(actions)) is not None:
        return "repetition", detail
    if (detail := contamination_rule(record, index)) is not None:
        return "contamination", detail
    if (detail := length_rule(where, record)) is not None:
        return "length", detail
    return None


# -----------------------------------------------------------------------------
# read the episodes, apply the rules, deduplicate

tokenizer = None
episodes = []
for path in paths:
    for where, record in read_jsonl(path):
        check_episode(record, where)
        episodes.append((where, record))
print(f"read {len(episodes)} episodes from {len(paths)} files")

dropped = []          # (where, record, rule, detail)
survivors = []        # (where, record)
for where, record in tqdm(episodes, desc="filter"):
    failure = first_failure(where, record, index)
    if failure:
        dropped.append((where, record) + failure)
    else:
        survivors.append((where, record))

# deduplication: identical conversations, then the best trajectories of each task (highest
# reward, then fewest turns, then first read)
kept, by_messages, by_task = [], {}, defaultdict(list)
ranked = sorted(range(len(survivors)), key=lambda i: (-survivors[i][1]["reward"],
                                                     len(agent_message_indices(survivors[i][1], survivors[i][0])), i))
for i in ranked:
    where, record = survivors[i]
    key = json.dumps([(m["role"], m["content"]) for m in record["messages"]], ensure_ascii=False)
    task = (record["env"], record.get("task_id", record["id"]))
    if key in by_messages:
        dropped.append((where, record, "duplicate", f"same messages as {by_messages[key]}"))
    elif per_task and len(by_task[task]) >= per_task:
        dropped.append((where, record, "per_task",
                        f"task {task[1]} already has {', '.join(by_task[task])} (better or equal)"))
    else:
        by_messages[key] = record["id"]
        by_task[task].append(record["id"])
        kept.append(i)
kept.sort()  # back to input order

# -----------------------------------------------------------------------------
# write the training records and the report; print the summary
out_path = os.path.join(out_dir, "agent.jsonl")
write_jsonl(out_path, ({"id": record["id"], "source": f"agent:{record['env']}", "reward": record["reward"],
                        "task_id": record.get("task_id"), "messages": training_messages(where, record)}
                       for where, record in (survivors[i] for i in kept)))

per_env = {}
for _, record in episodes:
    per_env.setdefault(record["env"], {"total": 0, "kept": 0, "dropped": Counter()})["total"] += 1
for i in kept:
    per_env[survivors[i][1]["env"]]["kept"] += 1
for _, record, rule, _ in dropped:
    per_env[record["env"]]["dropped"][rule] += 1
report = {
    "inputs": paths,
    "total": len(episodes), "kept": len(kept), "dropped": len(dropped),
    "per_env": {env: {"total": s["total"], "kept": s["kept"],
                      "dropped": {rule: s["dropped"][rule] for rule in RULES if s["dropped"][rule]}}
                for env, s in sorted(per_env.items())},
    "eval_tasks": eval_counts,
    "dropped_trajectories": [{"id": r["id"], "env": r["env"], "task_id": r.get("task_id"), "where": where,
                              "reason": rule, "detail": detail} for where, r, rule, detail in dropped],
    "settings": config,
}
with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=1, ensure_ascii=False)
    f.write("\n")

header = ["env", "total", "kept"] + RULES
rows = [[env, s["total"], s["kept"]] + [s["dropped"].get(rule, 0) for rule in RULES]
        for env, s in report["per_env"].items()]
rows.append(["all", len(episodes), len(kept)] + [sum(row[3 + j] for row in rows) for j in range(len(RULES))])
widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
for row in [header] + rows:
    print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
rate = len(kept) / len(episodes) if episodes else 0.0
print(f"kept {len(kept)}/{len(episodes)} ({rate:.1%}) -> {out_path}; every dropped trajectory with its "
      f"reason: {os.path.join(out_dir, 'report.json')}")
