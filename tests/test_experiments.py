"""The reproduction study's measuring tools: the held-out loss and the results writer."""
import json
import os
import subprocess

import torch

from agentune.testing import PYTHON, REPO


def run(script, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([PYTHON, os.path.join(REPO, "experiments", script), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def write_jsonl(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_heldout_loss_is_the_mean_over_trained_tokens(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from agentune.chat import encode
    from agentune.records import to_messages
    agent = [{"messages": [{"role": "system", "content": "You are an agent."},
                           {"role": "user", "content": f"List the files in /tmp/{i}."},
                           {"role": "assistant", "content": f"Act: bash\n```bash\nls /tmp/{i}\n```"},
                           {"role": "user", "content": "a.txt b.txt"},
                           {"role": "assistant", "content": "Act: answer(a.txt b.txt)"}]} for i in range(3)]
    general = [{"instruction": "Say hello.", "input": "", "output": "Hello!"},
               {"instruction": "word " * 400, "input": "", "output": "too long for seq_len"}]
    write_jsonl(tmp_path / "agent.jsonl", agent)
    write_jsonl(tmp_path / "general.jsonl", general)
    out = tmp_path / "loss.json"
    run("heldout_loss.py", f"--model={tiny_model_dir}", f"--out={out}", "--seq_len=256", "--dtype=float32",
        f"--data=agent={tmp_path}/agent.jsonl,general={tmp_path}/general.jsonl")
    result = json.loads(out.read_text())["loss"]
    assert result["general"]["conversations"] == 1 and result["general"]["too_long_skipped"] == 1

    # independently: Hugging Face's own loss with every untrained token labelled -100, per record,
    # weighted by trained tokens (the file's loss is a mean over tokens, not over records)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    total = tokens = 0
    for i, record in enumerate(agent):
        ids, mask = encode(tokenizer, to_messages(record, f"agent:{i + 1}"))
        labels = torch.tensor([t if m else -100 for t, m in zip(ids, mask)])
        labels[0] = -100
        n = int((labels[1:] != -100).sum())
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=labels[None]).loss.item()
        total, tokens = total + loss * n, tokens + n
    assert result["agent"]["tokens"] == tokens
    assert abs(result["agent"]["loss"] - total / tokens) < 1e-3
    # the interval comes from resampling conversations; each one's figures are kept for pairing
    assert result["agent"]["ci_low"] <= result["agent"]["loss"] <= result["agent"]["ci_high"]
    assert result["agent"]["ci_low"] < result["agent"]["ci_high"]
    per_conversation = result["agent"]["per_conversation"]
    assert len(per_conversation) == 3 and sum(c for _, c in per_conversation.values()) == tokens


def write_eval(study, run, task, group, successes, n=40, part="heldin", ids="t{i}"):
    """A 05_eval.py output of one task: results.json and its episodes (the first `successes` win)."""
    from agentune import scoring
    part = study / "eval" / run / part
    (part / "episodes").mkdir(parents=True, exist_ok=True)
    records = [{"task_id": ids.format(i=i), "env": task, "reward": float(i < successes), "success": i < successes,
                "finish": "answered"} for i in range(n)]
    write_jsonl(part / "episodes" / f"{task}.jsonl", records)
    results = json.loads((part / "results.json").read_text()) if (part / "results.json").exists() else {"tasks": {}}
    low, high = scoring.score_interval(records)
    results["tasks"][task] = {"score": scoring.task_score(records), "n": n, "ci_low": low, "ci_high": high,
                              "group": group}
    (part / "results.json").write_text(json.dumps(results))


def write_runs(study, successes):
    """alfworld and db (held-in) and gsm8k (general) for each run: {run: (alfworld, db, gsm8k) wins of 40}."""
    for run_name, (alf, db, gsm) in successes.items():
        write_eval(study, run_name, "alfworld", "held_in", alf)
        write_eval(study, run_name, "db", "held_in", db)
        write_eval(study, run_name, "gsm8k", "general", gsm)


def report(tmp_path, successes):
    """write_runs() into a study, then write_results.py on it: the RESULTS.md text."""
    write_runs(tmp_path / "study", successes)
    out_md = tmp_path / "RESULTS.md"
    run("write_results.py", f"--study={tmp_path / 'study'}", f"--out_md={out_md}",
        f"--out_json={tmp_path / 'results.json'}", "--command=test")
    return out_md.read_text()


def write_loss(study, run, shift):
    """An experiments/heldout_loss.py output: 20 conversations of 10 tokens, the base's loss + shift."""
    (study / "loss").mkdir(parents=True, exist_ok=True)
    per = {f"c{i}": [(2.0 + 0.1 * (i % 3) + shift) * 10, 10] for i in range(20)}
    sums = sum(v[0] for v in per.values())
    (study / "loss" / f"{run}.json").write_text(json.dumps({"loss": {"agent": {
        "loss": sums / 200, "ci_low": sums / 200 - 0.05, "ci_high": sums / 200 + 0.05,
        "conversations": 20, "per_conversation": per}}}))


def test_results_verdicts_follow_the_intervals(tmp_path):
    study = tmp_path / "study"
    # alfworld: 0/40 -> 20/40 (intervals apart); db: 2/40 -> 5/40 (overlap); gsm8k: 10/40 -> 9/40
    write_runs(study, {"base": (0, 2, 10), "eta0.2": (20, 5, 9), "eta0.0": (0, 2, 12)})
    # held-out losses on the same 20 conversations: eta0.2 lower on agent by 0.5 nats everywhere
    for run_name, shift in {"base": 0.0, "eta0.2": -0.5, "eta0.0": 0.3}.items():
        write_loss(study, run_name, shift)
    out_md, out_json = tmp_path / "RESULTS.md", tmp_path / "results.json"
    run("write_results.py", f"--study={study}", f"--out_md={out_md}", f"--out_json={out_json}", "--command=test")
    results = json.loads(out_json.read_text())["runs"]
    assert set(results) == {"base", "eta0.0", "eta0.2"}
    alf = results["eta0.2"]["tasks"]["alfworld"]
    assert alf["score"] == 50.0 and alf["n"] == 40 and alf["ci_low"] < 50 < alf["ci_high"]
    claims = out_md.read_text().split("## The paper's claims on these numbers")[1]
    alf_line = next(line for line in claims.splitlines() if "- alfworld" in line)
    assert "**reproduced**" in alf_line and "tuned alone 20, base alone 0" in alf_line
    assert "**within noise**" in next(line for line in claims.splitlines() if "- db" in line)
    assert "**kept**" in next(line for line in claims.splitlines() if "- gsm8k" in line)
    assert "2. The eta sweep (eta0.0 / eta0.2, same compute)" in claims
    goal = claims.split("1c.")[1].split("\n2.")[0]   # one held-in task apart is not the goal
    assert "   - eta0.2: 1 of 2 held-in tasks measured (alfworld); general kept on all 1 measured\n" in goal + "\n"
    assert "goal met" not in goal
    # the paired loss difference is exact here (a constant shift): -0.5 with a zero-width interval
    losses_table = out_md.read_text().split("## Held-out losses")[1].split("##")[0]
    assert "Δ -0.500 [-0.500, -0.500]" in next(line for line in losses_table.splitlines() if line.startswith("| eta0.2"))
    assert abs(results["eta0.2"]["heldout_loss"]["agent"]["loss"] - 1.595) < 1e-9
    assert "higher at eta0.0 than at eta0.2, intervals apart" in next(
        line for line in claims.splitlines() if "loss on agent" in line)


def test_results_name_another_split_and_need_no_base(tmp_path):
    # explorer vs replay (issue 11) on ALFWorld std and valid_seen, no base run (EVAL_BASE=0)
    study = tmp_path / "study"
    games = "valid_seen/pick_and_place_simple-Apple-None-Fridge-1/trial_{i}"
    for run_name, (std, seen) in {"eta1.0": (20, 30), "replay_eta1.0": (10, 8)}.items():
        write_eval(study, run_name, "alfworld", "held_in", std, ids=games)
        write_eval(study, run_name, "alfworld", "held_in", seen, part="seen", ids=games)
    write_loss(study, "base", 0.0)  # the base's loss is measured though it is not evaluated
    write_loss(study, "eta1.0", -0.25)
    out_md, out_json = tmp_path / "RESULTS.md", tmp_path / "results.json"
    outcomes = tmp_path / "outcomes.jsonl"
    proc = run("write_results.py", f"--study={study}", f"--out_md={out_md}", f"--out_json={out_json}", "--command=test",
               f"--out_outcomes={outcomes}")
    assert "base has no results" in proc.stdout
    # an earlier study's results.json: its runs this one lacks are carried over, marked, without paired tests
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"study": "runs/old", "command": "old", "date": "2026-12-01", "runs": {
        "base": {"tasks": {"alfworld": {"score": 0.0, "n": 40, "ci_low": 0.0, "ci_high": 8.8}}},
        "eta1.0": {"tasks": {"alfworld": {"score": 99.0, "n": 40, "ci_low": 90.0, "ci_high": 100.0}}}}}))
    merged_md, merged_json = tmp_path / "merged.md", tmp_path / "merged.json"
    run("write_results.py", f"--study={study}", f"--out_md={merged_md}", f"--out_json={merged_json}",
        "--command=test", f"--previous=['{earlier}']")
    merged = json.loads(merged_json.read_text())["runs"]
    assert "runs/old" in merged["base"]["carried_from"] and "carried_from" not in merged["eta1.0"]
    assert merged["eta1.0"]["tasks"]["alfworld"]["score"] == 50.0  # this study's own run wins
    merged_claims = merged_md.read_text().split("## The paper's claims on these numbers")[1]
    line = next(line for line in merged_claims.splitlines() if "eta1.0, alfworld" in line)
    assert "**reproduced**" in line and "McNemar" not in line  # by the intervals; no episodes of the base
    lines = [json.loads(line) for line in outcomes.read_text().splitlines()]
    assert len(lines) == 4 * 40 and sum(r["success"] for r in lines if r["task"] == "alfworld_seen") == 38
    results = json.loads(out_json.read_text())["runs"]
    assert results["eta1.0"]["tasks"]["alfworld_seen"]["score"] == 75.0
    assert results["replay_eta1.0"]["tasks"]["alfworld"]["score"] == 25.0
    text = out_md.read_text()
    claims = text.split("## The paper's claims on these numbers")[1]
    seen_line = next(line for line in claims.splitlines() if "- alfworld_seen" in line)
    assert "**reproduced**" in seen_line and "explorer alone 22, replay alone 0" in seen_line
    assert "| pick_and_place_simple | 20/40 | 30/40 | 10/40 | 8/40 |" in text
    assert "eta1.0 (alfworld_seen)" in text
    losses_table = text.split("## Held-out losses")[1].split("##")[0]
    assert "Δ -0.250 [-0.250, -0.250]" in next(line for line in losses_table.splitlines() if line.startswith("| eta1.0"))


def test_results_hold_the_self_teacher_and_the_replay_claims_together(tmp_path):
    # claims 3 (filtered vs unfiltered) and 4 (explorer vs replay) in one report, both with paired tests
    study = tmp_path / "study"
    for run_name, wins in {"self_filtered": 12, "self_unfiltered": 4, "eta1.0": 20, "replay_eta1.0": 10}.items():
        write_eval(study, run_name, "alfworld", "held_in", wins)
    out_md, out_json = tmp_path / "RESULTS.md", tmp_path / "results.json"
    run("write_results.py", f"--study={study}", f"--out_md={out_md}", f"--out_json={out_json}", "--command=test")
    claims = out_md.read_text().split("## The paper's claims on these numbers")[1]
    self_line = next(line for line in claims.splitlines() if "filtered 30.0" in line)
    assert "unfiltered 10.0" in self_line and "McNemar p = " in self_line
    replay_line = next(line for line in claims.splitlines() if "explorer 50.0" in line)
    assert "explorer alone 10, replay alone 0" in replay_line


def test_results_carry_the_tasks_a_run_lacks_and_sweep_each_pool(tmp_path):
    # this study measured the base on a new task only (miniwob) and one run of the DB pool (eta0.2_db);
    # the earlier study holds the base's other tasks and the pool's eta1.0_db
    study = tmp_path / "study"
    write_eval(study, "base", "miniwob", "held_out", 2)
    write_eval(study, "eta0.2_db", "miniwob", "held_out", 6, part="miniwob")   # a part named after its task
    write_eval(study, "eta0.2_db", "alfworld", "held_in", 20)
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"study": "runs/old", "command": "old", "date": "2026-12-01", "runs": {
        "base": {"tasks": {"alfworld": {"score": 0.0, "n": 40, "ci_low": 0.0, "ci_high": 8.8},
                           "miniwob": {"score": 90.0, "n": 40, "ci_low": 80.0, "ci_high": 95.0}}},
        "eta1.0_db": {"tasks": {"alfworld": {"score": 30.0, "n": 40, "ci_low": 18.1, "ci_high": 45.4}}}}}))
    out_md, out_json = tmp_path / "RESULTS.md", tmp_path / "results.json"
    run("write_results.py", f"--study={study}", f"--out_md={out_md}", f"--out_json={out_json}",
        "--command=test", f"--previous=['{earlier}']")
    results = json.loads(out_json.read_text())["runs"]
    base = results["base"]
    assert base["tasks"]["miniwob"]["score"] == 5.0   # measured here: this study's figure wins
    assert base["tasks"]["alfworld"]["score"] == 0.0  # carried, and said so
    assert base["carried_from"].startswith("alfworld from ") and "the other tasks measured here" in base["carried_from"]
    claims = out_md.read_text().split("## The paper's claims on these numbers")[1]
    line = next(line for line in claims.splitlines() if "eta0.2_db, alfworld" in line)
    assert "**reproduced**" in line and "McNemar" not in line       # the base's alfworld has no episodes here
    line = next(line for line in claims.splitlines() if "eta0.2_db, miniwob (held_out)" in line)
    assert "**within noise**" in line and "tuned alone 4, base alone 0" in line   # paired: both measured here
    assert "   - eta0.2_db: 1 of 1 held-in tasks measured (alfworld); general not measured" in claims
    assert "goal met" not in claims
    assert "2b. The eta sweep (eta0.2_db / eta1.0_db, same compute)" in claims
    assert "   - alfworld: 50.0 [" in claims.split("2b.")[1]


def test_results_say_when_one_run_meets_the_goal(tmp_path):
    # eta1.0_db beats the base on two held-in tasks (intervals apart) and keeps gsm8k: the goal;
    # eta0.2_db beats it on one and loses gsm8k (intervals apart the wrong way)
    goal = report(tmp_path, {"base": (0, 0, 20), "eta1.0_db": (15, 12, 18), "eta0.2_db": (15, 1, 2)}).split("1c.")[1]
    assert ("   - eta1.0_db: 2 of 2 held-in tasks measured (alfworld, db); general kept on all 1 measured: "
            "**goal met**") in goal
    assert "   - eta0.2_db: 1 of 2 held-in tasks measured (alfworld); general lost on some\n" in goal


def test_results_compare_more_epochs_of_the_same_mix(tmp_path):
    # eta0.2_db_2ep trained eta0.2_db's mix twice as long: alfworld 2/40 -> 16/40 (apart, paired),
    # db 10 -> 12 (overlap), gsm8k 20 -> 19 (kept)
    md = report(tmp_path, {"base": (0, 0, 20), "eta0.2_db": (2, 10, 20), "eta0.2_db_2ep": (16, 12, 19)})
    epochs = md.split("\n5. (ours) More epochs")[1]
    assert epochs.startswith(" of the same mix help on agent tasks and keep general abilities (eta0.2_db_2ep vs "
                             "eta0.2_db: the same samples, 2× the steps)")
    lines = epochs.splitlines()
    alf = next(line for line in lines if "- alfworld" in line)
    assert "**reproduced**" in alf and "eta0.2_db_2ep alone 14, eta0.2_db alone 0" in alf
    assert "**within noise**" in next(line for line in lines if "- db" in line)
    assert "**kept**" in next(line for line in lines if "- gsm8k" in line)
    assert "   - eta0.2_db_2ep: 2 of 2 held-in tasks measured (alfworld, db)" in md.split("1c.")[1]
