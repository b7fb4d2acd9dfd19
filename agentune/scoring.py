"""Scores for 05_eval.py: per-task scores, error analysis, the paper's Overall score, reports.

The Overall score (AgentTuning, Zeng et al. 2023, section 3.1): a task's scores span very
different ranges, so each task score is divided by a baseline for that task -- the paper uses
the average over five models (GPT-3.5, GPT-4, Llama-2-chat 7B/13B/70B) -- and a group's Overall
is the mean of these ratios over the group's tasks. PAPER_SCORES below reproduces the paper's
figures (e.g. AgentLM-70B: held-in 2.55, held-out 1.40; tests/test_scoring.py checks it).
"""
import json
import math
import os
import re

from agentune.records import agent_message_indices

GROUPS = ("held_in", "held_out", "general")

# The paper's Table (Zeng et al. 2023): per task, its group and the score of each model in
# PAPER_MODELS order. Our task names where we run the task; the rest are the paper's own.
PAPER_MODELS = ("GPT-3.5", "GPT-4", "Llama-2-7B-chat", "Llama-2-13B-chat", "Llama-2-70B-chat",
                "AgentLM-7B", "AgentLM-13B", "AgentLM-70B")
BASELINE_MODELS = PAPER_MODELS[:5]  # whose average is the paper's per-task divisor
PAPER_SCORES = {
    "alfworld": ("held_in", (14.0, 78.0, 2.0, 2.0, 6.0, 84.0, 76.0, 86.0)),
    "webshop": ("held_in", (67.2, 58.6, 4.4, 7.2, 1.5, 63.6, 70.8, 64.9)),
    "mind2web": ("held_in", (15.7, 22.6, 3.7, 2.3, 0.2, 6.4, 8.4, 13.5)),
    "kg": ("held_in", (27.2, 52.1, 0.0, 0.0, 0.0, 18.1, 26.8, 47.0)),
    "os": ("held_in", (32.6, 36.8, 8.3, 9.0, 9.0, 17.4, 18.1, 21.5)),
    "db": ("held_in", (15.0, 33.7, 0.3, 1.3, 9.3, 30.6, 33.7, 37.7)),
    "sciworld": ("held_out", (21.2, 36.4, 5.9, 6.4, 7.9, 13.7, 18.0, 20.8)),
    "miniwob": ("held_out", (66.7, 69.4, 0.0, 19.6, 0.7, 28.9, 31.1, 60.7)),
    "webarena": ("held_out", (4.56, 6.28, 1.23, 1.11, 0.62, 0.74, 1.60, 3.81)),
    "hotpotqa": ("held_out", (37.4, 52.1, 22.6, 25.2, 37.5, 22.3, 29.6, 41.6)),
    "rewoo": ("held_out", (71.0, 79.7, 48.3, 48.7, 55.1, 50.9, 55.7, 66.0)),
    "dcg": ("held_out", (24.5, 50.0, 0.0, 0.0, 5.0, 7.0, 2.5, 23.5)),
    "mmlu": ("general", (70.0, 86.4, 48.0, 54.3, 62.1, 48.7, 53.6, 59.5)),
    "humaneval": ("general", (48.1, 67.0, 13.9, 18.4, 30.8, 15.4, 14.8, 28.7)),
    "gsm8k": ("general", (57.1, 87.1, 27.7, 37.5, 54.7, 24.6, 32.4, 59.7)),
    "mtbench": ("general", (7.94, 8.99, 6.26, 6.65, 6.85, 6.11, 6.57, 7.26)),
}

# The group of every environment 05_eval.py runs (a new env needs its line here); the
# multiple-choice sets (MMLU-like) are general.
TASK_GROUPS = {"os": "held_in", "db": "held_in", "alfworld": "held_in",
               "sciworld": "held_out", "miniwob": "held_out", "hotpotqa": "held_out", "dcg": "held_out",
               "gsm8k": "general", "humaneval": "general", "mmlu": "general", "mtbench": "general"}


def paper_scores(model):
    """{task: score} of one paper model."""
    i = PAPER_MODELS.index(model)
    return {task: scores[i] for task, (_, scores) in PAPER_SCORES.items()}


def paper_baselines():
    """{task: the five-model average} -- the paper's per-task divisor."""
    n = len(BASELINE_MODELS)
    return {task: round(sum(scores[:n]) / n, 4) for task, (_, scores) in PAPER_SCORES.items()}


def paper_groups():
    return {task: group for task, (group, _) in PAPER_SCORES.items()}


def overall(scores, baselines, groups):
    """{group: mean over the group's tasks of score / baseline} for the tasks that have both a
    score and a positive baseline; a group without such a task is left out."""
    ratios = {}
    for task, score in scores.items():
        baseline = baselines.get(task)
        if score is None or not baseline or baseline <= 0:
            continue
        ratios.setdefault(groups[task], []).append(score / baseline)
    return {g: sum(r) / len(r) for g in GROUPS if (r := ratios.get(g))}


def task_score(records):
    """The primary metric on 0-100: the mean episode reward x 100. Every env defines its reward
    as the source benchmark's task score in [0, 1] (success for os/db/alfworld/miniwob, exact match
    for gsm8k/mc/mmlu, pass@1 for humaneval, the env's score / 100 for sciworld, answer F1 for
    hotpotqa, a win for dcg). Episodes that ended in an error count as 0: they are counted in the error
    analysis, never dropped. MT-Bench is the exception: see scored_records."""
    records, scale = scored_records(records)
    if not records:
        return None
    if records[0].get("env") == "sciworld":
        # the paper averages ScienceWorld per task type first (types have 4-10 test variations);
        # the type is the task id before '#'
        by_type = {}
        for r in records:
            by_type.setdefault(r["task_id"].split("#")[0], []).append(float(r.get("reward") or 0.0))
        return 100.0 * sum(sum(v) / len(v) for v in by_type.values()) / len(by_type)
    return scale * sum(float(r.get("reward") or 0.0) for r in records) / len(records)


def scored_records(records):
    """(the episodes a task's score counts, its scale). 0-100 and every episode, except MT-Bench:
    the paper's 1-10 scale (reward = rating / 10) over the judged questions (a question the judge
    could not rate, env_error, is left out, as FastChat does)."""
    if records and records[0].get("env") == "mtbench":
        return [r for r in records if r.get("finish") != "env_error"], 10.0
    return records, 100.0


def wilson(successes, n, z=1.96):
    """The Wilson score interval of a rate, in [0, 1] ((None, None) when n is 0)."""
    if not n:
        return None, None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def score_interval(records, z=1.96):
    """95% interval of task_score on its 0-100 scale: Wilson when every reward is 0 or 1 (a
    success rate), else the normal interval of the mean reward (ScienceWorld's partial scores)."""
    records, scale = scored_records(records)
    rewards = [float(r.get("reward") or 0.0) for r in records]
    if not rewards:
        return None, None
    if all(x in (0.0, 1.0) for x in rewards):
        low, high = wilson(sum(rewards), len(rewards), z)
    else:
        mean = sum(rewards) / len(rewards)
        half = z * math.sqrt(sum((x - mean) ** 2 for x in rewards) / max(1, len(rewards) - 1) / len(rewards))
        low, high = max(0.0, mean - half), min(1.0, mean + half)
    return round(scale * low, 2), round(scale * high, 2)


def ratio_interval(sums, counts, baseline=None, resamples=2000, seed=1234):
    """95% percentile-bootstrap interval of sum(sums) / sum(counts) (a per-token mean over items,
    e.g. conversations: item i contributes sums[i] over counts[i] tokens), items resampled whole.
    With baseline=(sums, counts) of the same items in the same order: the interval of the
    difference ratio - baseline ratio, both resampled together (paired)."""
    import numpy as np
    picks = np.random.default_rng(seed).integers(0, len(sums), size=(resamples, len(sums)))

    def ratios(s, c):   # the ratio of every resample
        return np.asarray(s, dtype=float)[picks].sum(axis=1) / np.asarray(c, dtype=float)[picks].sum(axis=1)
    values = ratios(sums, counts) - (ratios(*baseline) if baseline is not None else 0.0)
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


# ---------------------------------------------------------------------------------------------
# Error analysis

ERROR_KINDS = ("invalid_format", "invalid_action", "short_repetition", "long_repetition",
               "refused_or_empty", "context_limit", "turn_limit", "task_error", "env_error", "llm_error")
# a refusal opens the reply; "I cannot find the file" later in a thought is not one
REFUSAL = re.compile(r"^\s*(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i can not|i'm unable|"
                     r"i am unable|as an ai)", re.IGNORECASE)


def agent_turns(record):
    """The agent's own replies and the step facts of each (in order; a reply whose step raised
    has none)."""
    steps = record.get("steps") or []
    messages = record.get("messages", [])
    indices = agent_message_indices(record, record.get("id", "<episode>")) if messages else []
    return [messages[i].get("content") or "" for i in indices], steps


def longest_run(keys):
    best, run = 0, 0
    for i, key in enumerate(keys):
        run = run + 1 if i and key == keys[i - 1] else 1
        best = max(best, run)
    return best


def has_cycle(keys, times=3, max_period=4):
    """A block of 2..max_period actions repeated `times` times in a row (A B A B A B)."""
    for period in range(2, max_period + 1):
        for start in range(len(keys) - period * times + 1):
            block = keys[start:start + period]
            if len(set(block)) > 1 and all(keys[start + k * period:start + (k + 1) * period] == block
                                           for k in range(1, times)):
                return True
    return False


def episode_errors(record, short_repeat=3, long_repeat=5):
    """The error kinds one episode shows (an episode can show several)."""
    replies, steps = agent_turns(record)
    finish = record.get("finish")
    kinds = set()
    if finish == "invalid_format" or any(s.get("valid_format") is False for s in steps):
        kinds.add("invalid_format")
    if any(s.get("valid_format") is not False and s.get("valid_action") is False for s in steps):
        kinds.add("invalid_action")
    # repetition compares the env's parsed action, or the raw reply when there was none
    keys = [(s.get("action") or reply).strip() for s, reply in zip(steps, replies)]
    if longest_run(keys) >= short_repeat:
        kinds.add("short_repetition")
    elif keys and (max(map(keys.count, set(keys))) >= long_repeat or has_cycle(keys)):
        kinds.add("long_repetition")
    if any(not reply.strip() or REFUSAL.match(reply) for reply in replies):
        kinds.add("refused_or_empty")
    for kind, reason in (("context_limit", "context_limit"), ("turn_limit", "max_turns"),
                         ("task_error", "task_error"), ("env_error", "env_error"), ("llm_error", "llm_error")):
        if finish == reason:
            kinds.add(kind)
    return kinds


def error_analysis(records, short_repeat=3, long_repeat=5):
    """{kind: number of episodes showing it} plus "failed" (episodes without success)."""
    counts = dict.fromkeys(ERROR_KINDS, 0)
    counts["failed"] = 0
    for record in records:
        for kind in episode_errors(record, short_repeat, long_repeat):
            counts[kind] += 1
        counts["failed"] += not record.get("success")
    return counts


# ---------------------------------------------------------------------------------------------
# Reports: several runs' results.json side by side, with the paper's models

def load_results(path):
    with open(path) as f:
        results = json.load(f)
    if not isinstance(results.get("tasks"), dict):
        raise SystemExit(f"{path}: not a results.json of 05_eval.py (no 'tasks' object)")
    results.setdefault("label", os.path.basename(os.path.dirname(os.path.abspath(path))))
    return results


def _fmt(x, digits=1):
    return "" if x is None else f"{x:.{digits}f}"


def table_tasks(runs):
    """The tasks of several runs in group order, and their groups as the runs recorded them."""
    groups = {}
    for run in runs:
        for t, v in run["tasks"].items():
            groups.setdefault(t, v.get("group") or TASK_GROUPS.get(t, "general"))
    return sorted(groups, key=lambda t: (GROUPS.index(groups[t]), t)), groups


def markdown_table(runs, baselines):
    """Tasks x models: each run (a results dict), then the paper's models. Overall rows over the
    tasks of the table (the same tasks for every column, so columns compare); for the paper's
    models also their Overall over the paper's full task lists."""
    tasks, groups = table_tasks(runs)
    paper_tasks = [t for t in tasks if t in PAPER_SCORES]
    columns = [run["label"] for run in runs] + (list(PAPER_MODELS) if paper_tasks else [])
    table = {run["label"]: {t: v["score"] for t, v in run["tasks"].items()} for run in runs}
    for model in columns[len(runs):]:
        table[model] = {t: s for t, s in paper_scores(model).items() if t in tasks}
    lines = ["| task | group | baseline | " + " | ".join(columns) + " |",
             "|---|---|---:|" + "---:|" * len(columns)]
    for t in tasks:
        lines.append(f"| {t} | {groups[t]} | {_fmt(baselines.get(t))} | "
                     + " | ".join(_fmt(table[c].get(t)) for c in columns) + " |")
    for g in GROUPS:
        if g not in groups.values():
            continue
        cells = []
        for c in columns:
            value = overall({t: s for t, s in table[c].items() if t in tasks}, baselines, groups).get(g)
            cells.append(_fmt(value, 2))
        lines.append(f"| **Overall {g}** | | | " + " | ".join(cells) + " |")
    if paper_tasks:
        full = {m: overall(paper_scores(m), paper_baselines(), paper_groups()) for m in PAPER_MODELS}
        for g in GROUPS:
            if g in groups.values():
                lines.append(f"| Overall {g}, all paper tasks | | | " + " | " * len(runs)
                             + " | ".join(_fmt(full[m][g], 2) for m in PAPER_MODELS) + " |")
    return "\n".join(lines)


def errors_table(run):
    """Tasks x error kinds for one run, as % of the task's episodes."""
    kinds = ERROR_KINDS + ("failed",)
    lines = [f"| task ({run['label']}) | n | " + " | ".join(kinds) + " |",
             "|---|---:|" + "---:|" * len(kinds)]
    for t, v in run["tasks"].items():
        n = max(v["n"], 1)
        lines.append(f"| {t} | {v['n']} | "
                     + " | ".join(_fmt(100.0 * v["errors"].get(k, 0) / n) for k in kinds) + " |")
    return "\n".join(lines)


def write_report(path, runs, baselines):
    text = ["# Evaluation results", "",
            "Scores are 0-100 (the task's primary metric). Overall = mean over a group's tasks of "
            "score / baseline; baseline = the paper's five-model average (GPT-3.5, GPT-4, "
            "Llama-2-chat 7B/13B/70B) where the paper has the task, else a base-model run. "
            "Paper columns are the figures of Zeng et al. (2023) on the paper's own test sets.", "",
            markdown_table(runs, baselines), "",
            "## Error analysis (% of episodes; an episode can show several kinds)", ""]
    for run in runs:
        text += [errors_table(run), ""]
    with open(path, "w") as f:
        f.write("\n".join(text))


def write_chart(path, runs, baselines):
    """Bars per task for each run and the baseline, and the Overall scores per group."""
    import matplotlib
    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt
    tasks, _ = table_tasks(runs)
    # (label, scores, 95% interval bounds or None) per run, then the baselines (no interval)
    series = [(run["label"], [run["tasks"].get(t, {}).get("score") for t in tasks],
               [(run["tasks"].get(t, {}).get("ci_low"), run["tasks"].get(t, {}).get("ci_high")) for t in tasks])
              for run in runs]
    series.append(("baseline (Overall divisor)", [baselines.get(t) for t in tasks], None))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(5 + 1.2 * len(tasks), 5.2),
                                   gridspec_kw={"width_ratios": [max(len(tasks), 1) + 1, 3]})
    width = 0.8 / len(series)
    for i, (label, values, intervals) in enumerate(series):
        xs = [j + i * width for j in range(len(tasks))]
        heights = [v or 0.0 for v in values]
        yerr = None
        if intervals:   # asymmetric 95% interval bars; none where a run has no interval
            yerr = [[h - lo if lo is not None else 0.0 for h, (lo, _) in zip(heights, intervals)],
                    [hi - h if hi is not None else 0.0 for h, (_, hi) in zip(heights, intervals)]]
        ax1.bar(xs, heights, width, label=label, yerr=yerr, capsize=2, error_kw={"linewidth": 0.8})
    ax1.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=30)
    ax1.set_xlim(-0.5, max(len(tasks), 1) - 0.1)
    ax1.set_ylim(0, 105)
    ax1.set_ylabel("score (0-100; MT-Bench 1-10), 95% interval")
    ax1.set_title("task scores")
    width = 0.8 / max(len(runs), 1)
    for i, run in enumerate(runs):
        values = [run.get("overall", {}).get(g) or 0.0 for g in GROUPS]
        ax2.bar([j + i * width for j in range(len(GROUPS))], values, width, label=run["label"])
    ax2.set_xticks([j + 0.4 - width / 2 for j in range(len(GROUPS))], GROUPS)
    ax2.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")  # = the baseline average
    ax2.set_title("Overall (score / baseline)")
    # the legend goes below both plots, where it can never cover a bar
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
