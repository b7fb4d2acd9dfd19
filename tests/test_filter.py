"""02_filter.py on hand-written trajectories (tests/fixtures/raw_*.jsonl): each rule drops the
trajectory written to break it, with that reason, and keeps the good ones. The format rule uses
the real environments' parse_action; decontamination runs against the real GSM8K test set."""
import importlib.util
import json
import os
import runpy
import sys

import pytest

from agentune.envs import ENVS
from agentune.paths import data_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# what happens to each fixture trajectory: None = kept, else the rule that drops it
EXPECTED = {
    "os": {"os-good": None, "os-good-2": None, "os-good-longer": "per_task", "os-good-2-again": "duplicate",
           "os-wrong": "reward", "os-env-error": "finish", "os-no-action": "format", "os-loop": "repetition",
           "os-long": "length", "os-leak": "contamination"},
    "db": {"db-good": None, "db-unrelated": None, "db-wrong": "reward", "db-no-sql-block": "finish",
           "db-format-answered": "format", "db-loop": "repetition", "db-gsm8k-leak": "contamination"},
    "alfworld": {"alfworld/good": None, "alfworld/leak": "contamination", "alfworld/loop": "repetition",
                 "alfworld/max-turns": "finish"},
}
ENVS_HERE = [env for env in EXPECTED if importlib.util.find_spec(ENVS[env][0]) is not None]
pytestmark = pytest.mark.skipif(not ENVS_HERE, reason="none of agentune/envs/{os,db,alfworld}_env.py exists: "
                                "the format rule needs a real environment's parse_action")


def run_stage(script, *args):
    """Run a stage script in this process (as `python script args` would), sparing the imports."""
    argv = sys.argv
    sys.argv = [script, *args]
    try:
        return runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
    finally:
        sys.argv = argv


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def filter_fixtures(out_dir, *args):
    inputs = ",".join(os.path.join(FIXTURES, f"raw_{env}.jsonl") for env in ENVS_HERE)
    run_stage("02_filter.py", f"--inputs={inputs}", f"--out_dir={out_dir}", "--seq_len=1024", *args)
    with open(os.path.join(out_dir, "report.json")) as f:
        return read_lines(os.path.join(out_dir, "agent.jsonl")), json.load(f)


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    eval_tasks = [os.path.join(FIXTURES, "eval_os_tasks.json"), os.path.join(FIXTURES, "eval_alfworld_goals.jsonl"),
                  data_path("gsm8k", "test.jsonl")]
    return filter_fixtures(str(tmp_path_factory.mktemp("filtered")), f"--eval_tasks={eval_tasks!r}")


def test_each_rule_drops_its_trajectory_and_keeps_the_good_ones(filtered):
    kept, report = filtered
    reasons = {d["id"]: d["reason"] for d in report["dropped_trajectories"]}
    for env in ENVS_HERE:
        for id, rule in EXPECTED[env].items():
            assert reasons.get(id) == rule, f"{id}: expected {rule or 'kept'}, got {reasons.get(id) or 'kept'}"
    expected_kept = {id for env in ENVS_HERE for id, rule in EXPECTED[env].items() if rule is None}
    assert {r["id"] for r in kept} == expected_kept
    for env in ENVS_HERE:
        counts = report["per_env"][env]
        assert counts["total"] == len(EXPECTED[env])
        assert counts["kept"] + sum(counts["dropped"].values()) == counts["total"]


def test_details_explain_the_drops(filtered):
    _, report = filtered
    detail = {d["id"]: d["detail"] for d in report["dropped_trajectories"]}
    assert all(d["where"].split(":")[-1].isdigit() for d in report["dropped_trajectories"])
    if "os" in ENVS_HERE:
        assert "eval_os_tasks.json[0]" in detail["os-leak"] and "100%" in detail["os-leak"]
        assert "finish=env_error" in detail["os-env-error"] and "sandbox died" in detail["os-env-error"]
        assert "agent turn 2" in detail["os-no-action"]
        assert "crontab -l -u root" in detail["os-loop"]
        assert "tokens > seq_len 1024" in detail["os-long"]
        assert "os-good" in detail["os-good-longer"] and "os-good-2" in detail["os-good-2-again"]
    if "db" in ENVS_HERE:
        # the verbatim GSM8K question is the first test problem
        assert os.path.join("gsm8k", "test.jsonl") + ":1 " in detail["db-gsm8k-leak"]
    if "alfworld" in ENVS_HERE:
        # an eval goal shorter than n words matches as a whole: the same goal, not a similar one
        assert "eval_alfworld_goals.jsonl:1 " in detail["alfworld/leak"]


def test_training_records(filtered):
    kept, _ = filtered
    for record in kept:
        env = record["source"].split(":")[1]
        assert record["source"] == f"agent:{env}" and env in ENVS_HERE
        assert record["reward"] == 1.0 and record["task_id"]
        # trained: the agent's own replies (the last `turns` assistant messages), never the
        # one-shot example's assistant turns before the task
        assistant = [i for i, m in enumerate(record["messages"]) if m["role"] == "assistant"]
        turns = {r["id"]: r["turns"] for env in ENVS_HERE for r in read_lines(os.path.join(FIXTURES, f"raw_{env}.jsonl"))}
        agent = set(assistant[len(assistant) - turns[record["id"]]:])
        assert [m["loss"] for m in record["messages"]] == [i in agent for i in range(len(record["messages"]))]
    # the one-shot example is part of the conversation, ahead of the task, untrained
    first = next(r for r in kept if r["id"] in ("os-good", "db-good", "alfworld/good"))
    assert first["messages"][0]["role"] == "user" and first["messages"][1]["role"] == "assistant"
    assert first["messages"][1]["loss"] is False


def test_rules_are_settings(tmp_path):
    # per-env reward thresholds, no repetition limit, no per-task limit: those come back
    kept, report = filter_fixtures(str(tmp_path), f"--eval_tasks={os.path.join(FIXTURES, 'eval_os_tasks.json')}",
                                   "--min_reward_by_env={'os': 0.0, 'db': 0.0}", "--max_repeats=0", "--per_task=0")
    ids = {r["id"] for r in kept}
    for id in ("os-wrong", "os-loop", "os-good-longer", "db-wrong", "db-loop", "db-gsm8k-leak"):
        if id.split("-")[0] in ENVS_HERE:
            assert id in ids
    assert report["settings"]["min_reward_by_env"] == {"os": 0.0, "db": 0.0}


def test_bad_episode_names_file_and_line(tmp_path):
    env = ENVS_HERE[0]
    with open(os.path.join(FIXTURES, f"raw_{env}.jsonl")) as f:
        good, broken = f.readline(), json.loads(f.readline())
    del broken["reward"]
    path = tmp_path / "raw.jsonl"
    path.write_text(good + json.dumps(broken) + "\n")
    with pytest.raises(SystemExit, match=rf"raw.jsonl:2: episode record without a valid 'reward'"):
        run_stage("02_filter.py", f"--inputs={path}", f"--out_dir={tmp_path / 'out'}", "--eval_tasks=[]")
