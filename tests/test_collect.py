"""The episode runner and 01_collect.py on the real db environment: record format, how episodes
end (format errors, context overflow, endpoint failures, broken tasks), resume (also after
kill -9 of a real collector), sharding and env processes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from agentune import rollout
from agentune.agents import make_agent
from agentune.envs import env_class
from agentune.rollout import sample_tasks
from agentune.envs.base import Task
from agentune.records import read_jsonl
from agentune.paths import data_path
from agentune.rollout import EnvProcess, run_episode, run_episodes, shard_tasks
from agentune.chat_server import ChatServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB = env_class("db")
OPERATION = "Let me look.\nAction: Operation\n```sql\nSELECT 1;\n```"
ANSWER = 'I know it now.\nAction: Answer\nFinal Answer: ["1"]'


def db_teacher(messages):
    """Valid DBBench play: one SQL operation, then an answer."""
    operated = any(m["role"] == "assistant" and "Action: Operation" in m["content"] for m in messages)
    return ANSWER if operated else OPERATION


def records(path):
    return [r for _, r in read_jsonl(str(path))]


def teacher(server, **options):
    return make_agent("openai", model="teacher", base_url=server.url, **options)


def test_expert_records_and_resume(tmp_path):
    out = tmp_path / "db.jsonl"
    tasks = DB.load_tasks()[:6]
    summary = run_episodes("db", tasks, make_agent("expert"), str(out), workers=2)
    assert summary["new"] == summary["episodes"] == 6
    got = records(out)
    assert sorted(r["task_id"] for r in got) == sorted(t.id for t in tasks)
    for r in got:
        assert r["id"] == f"db/{r['task_id']}" and r["env"] == "db"
        assert r["agent"] == {"kind": "expert", "model": "", "sampling": {}}
        assert r["finish"] == "answered" and r["reward"] == float(r["success"])
        # the exact conversation: the env's prompt, then alternating agent replies / observations
        roles = [m["role"] for m in r["messages"]]
        assert roles[:3] == ["user", "assistant", "user"] and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:]))
        assert r["turns"] == len(r["steps"]) == roles[3:].count("assistant")
        assert r["steps"][-1]["action"] == "answer" and all(s["valid_format"] for s in r["steps"])
        assert r["time_s"] >= 0 and "error" not in r
    before = out.read_bytes()
    again = run_episodes("db", tasks, make_agent("expert"), str(out), workers=2)
    assert again["new"] == 0 and again["episodes"] == 6 and out.read_bytes() == before


@pytest.mark.parametrize("script, options, max_turns, finish, error", [
    (dict(replies=["I think the answer is 1."]), {}, None, "invalid_format", None),
    (dict(faults=["context"]), {}, None, "context_limit", "maximum context length"),
    (dict(faults=[500] * 3), dict(max_retries=2), None, "llm_error", "gave up after 3 attempts"),
    (dict(reply_fn=lambda m: OPERATION), dict(max_calls=2), None, "llm_error", "budget spent"),
    (dict(reply_fn=lambda m: OPERATION), {}, 2, "max_turns", None),
])
def test_openai_episode_endings(tmp_path, script, options, max_turns, finish, error):
    out = tmp_path / "db.jsonl"
    with ChatServer(**script) as server:
        run_episodes("db", DB.load_tasks()[:1], teacher(server, **options), str(out), max_turns=max_turns)
    [r] = records(out)
    assert r["finish"] == finish and r["success"] is False and r["reward"] == 0.0
    assert (error is None and "error" not in r) or error in r["error"]
    if finish == "invalid_format":
        assert r["steps"] == [{"valid_format": False, "valid_action": False, "action": "invalid"}]
    if finish == "max_turns":
        assert r["turns"] == 2 and r["usage"]["prompt_tokens"] > 0


def test_failing_episodes_do_not_stop_the_run(tmp_path):
    """A broken task (env_error) and an endpoint failure (llm_error) are recorded, the other
    episodes run; a restart runs both again (infrastructure failures), the others stay."""
    out = tmp_path / "db.jsonl"
    good = DB.load_tasks()[:3]
    broken = Task("broken-table", "a task whose table is missing", {"type": ["other"], "label": []})
    tasks = [good[0], broken, *good[1:]]
    with ChatServer(reply_fn=db_teacher, faults=[500]) as server:
        summary = run_episodes("db", tasks, teacher(server, max_retries=0), str(out), workers=1)
    assert summary["finish"] == {"answered": 2, "env_error": 1, "llm_error": 1}
    by_id = {r["task_id"]: r for r in records(out)}
    assert by_id["broken-table"]["finish"] == "env_error" and "KeyError" in by_id["broken-table"]["error"]
    assert by_id[good[0].id]["finish"] == "llm_error"  # the first request got the 500
    with ChatServer(reply_fn=db_teacher) as server:
        summary = run_episodes("db", tasks, teacher(server), str(out), workers=2)
    assert summary["new"] == 2 and summary["finish"] == {"answered": 3, "env_error": 1}
    got = records(out)
    assert len(got) == 4 and len({r["task_id"] for r in got}) == 4


def test_endpoint_down_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(rollout, "STOP_AFTER_FAILURES", 3)
    out = tmp_path / "db.jsonl"
    tasks = DB.load_tasks()[:10]
    with ChatServer(faults=[500] * 100) as server:
        with pytest.raises(SystemExit, match="stopped after 3 episodes in a row"):
            run_episodes("db", tasks, teacher(server, max_retries=0), str(out), workers=1)
    assert [r["finish"] for r in records(out)] == ["llm_error"] * 3
    with ChatServer(reply_fn=db_teacher) as server:
        summary = run_episodes("db", tasks, teacher(server), str(out), workers=4)
    assert summary["new"] == 10 and summary["finish"] == {"answered": 10}
    assert sorted(r["task_id"] for r in records(out)) == sorted(t.id for t in tasks)


def test_shards_partition_the_tasks():
    tasks = DB.load_tasks()
    shards = [shard_tasks(tasks, f"{i}/3") for i in range(3)]
    ids = [t.id for shard in shards for t in shard]
    assert sorted(ids) == sorted(t.id for t in tasks) and len(set(ids)) == len(tasks)
    assert [t.id for t in shard_tasks(tasks, "1/3")] == [t.id for t in shards[1]]  # deterministic
    assert shard_tasks(tasks, "") is tasks
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(SystemExit, match="--shard"):
            shard_tasks(tasks, bad)


def test_env_process_matches_in_process_env():
    """concurrency='processes' runs the env in a child process; episodes must be the same."""
    task = DB.load_tasks()[7]
    expert = make_agent("expert")
    local = run_episode(DB(), expert, task, DB.max_turns)
    remote_env = EnvProcess("db", {})
    try:
        remote = run_episode(remote_env, expert, task, DB.max_turns)
    finally:
        remote_env.close()
    assert remote_env.proc.returncode == 0
    for key in ("messages", "reward", "success", "finish", "turns", "steps"):
        assert remote[key] == local[key]


def collect(args, **kwargs):
    return subprocess.Popen([sys.executable, "01_collect.py", "--env=db", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_collect_shard_writes_its_share(tmp_path):
    done = collect(["--agent=expert", "--limit=9", "--shard=1/3", f"--out_dir={tmp_path}"])
    output = done.communicate(timeout=120)[0]
    assert done.returncode == 0, output
    got = records(tmp_path / "db.shard1of3.jsonl")
    expected = [t.id for t in sample_tasks(DB.load_tasks(None, "dev"), 9)[1::3]]
    assert sorted(r["task_id"] for r in got) == sorted(expected)
    assert json.loads((tmp_path / "config.shard1of3.json").read_text())["shard"] == "1/3"
    assert "db" in output and "episodes" in output
    # another agent's episodes never go into the same file (nor does a test-set task)
    other = collect(["--agent=openai", "--model=other", "--base_url=http://127.0.0.1:9/v1", "--limit=9",
                     "--shard=1/3", f"--out_dir={tmp_path}"])
    output = other.communicate(timeout=120)[0]
    assert other.returncode != 0 and "episodes of another agent (expert '')" in output, output
    assert records(tmp_path / "db.shard1of3.jsonl") == got
    std = collect(["--agent=expert", f"--tasks={data_path('agentbench', 'dbbench', 'standard.jsonl')}",
                   f"--out_dir={tmp_path / 'std'}"])
    output = std.communicate(timeout=120)[0]
    assert std.returncode != 0 and "300 of the 300 tasks to collect are in the 'std' test set" in output, output


def test_collect_resumes_after_kill_9(tmp_path):
    """kill -9 of a real collector mid-run: every line left is a whole record, and the restart
    adds exactly the missing episodes (none lost, none twice)."""
    out = tmp_path / "db.jsonl"
    limit = 30  # of DBBench dev's 60
    args = ["--agent=openai", "--model=teacher", "--workers=4", f"--limit={limit}", f"--out_dir={tmp_path}"]
    with ChatServer(reply_fn=db_teacher, delay_s=0.1) as server:
        args.append(f"--base_url={server.url}")
        proc = collect(args)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 8:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the collector finished before it could be killed: " + proc.stdout.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = out.read_bytes()
        assert killed.endswith(b"\n")
        first = [json.loads(line) for line in killed.splitlines()]
        assert 8 <= len(first) < limit
        proc = collect(args)
        output = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, output
    assert out.read_bytes().startswith(killed)  # the finished episodes are kept as they were
    got = records(out)
    assert sorted(r["task_id"] for r in got) == sorted(t.id for t in sample_tasks(DB.load_tasks(None, "dev"), limit))
    assert all(r["finish"] == "answered" and r["turns"] == 2 for r in got)
    assert f"{limit - len(first)} to run" in output


def test_limit_spreads_over_a_sorted_task_list():
    """ALFWorld's train split is sorted by task kind: --limit must not take one kind only, must pick
    the same tasks every run, and a larger limit must start with a smaller one's (so it resumes)."""
    tasks = [f"{kind}-{i}" for kind in ("look", "pick", "clean", "heat", "cool", "two") for i in range(100)]
    small, large = sample_tasks(tasks, 60), sample_tasks(tasks, 200)
    assert {t.split("-")[0] for t in small} == {"look", "pick", "clean", "heat", "cool", "two"}
    assert small == sample_tasks(tasks, 60) and large[:60] == small
    assert sample_tasks(tasks, 0) == tasks and sorted(sample_tasks(tasks, 1000)) == sorted(tasks)
