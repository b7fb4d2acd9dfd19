"""00_instruct.py with a scripted teacher (the local OpenAI-compatible server) on the real OS
sandbox and DB env: valid tasks are kept, every kind of bad candidate is rejected with its reason,
the counts are exact, and 01_collect.py's expert solves every kept task from the output files."""
import json
import os
import subprocess
import sys

import pytest

from agentune.envs.db_env import DBEnv
from agentune.envs.os_env import OSEnv, parse_task
from agentune.instruct import examples, make_candidate, os_task_json, parse_reply
from agentune.records import read_jsonl
from agentune.sandbox import Sandbox
from agentune.chat_server import ChatServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_sandbox = pytest.mark.skipif(not Sandbox.available()[0], reason=Sandbox.available()[1])


def block(obj):
    return "Here is a new task.\n```json\n" + json.dumps(obj) + "\n```"


def os_item(description, example, init=None, match=None, check=None):
    item = {"description": description, "evaluation": {"example": {"language": "bash", "code": example}}}
    if init:
        item["create"] = {"init": [{"language": "bash", "code": init}]}
    if match is not None:
        item["evaluation"]["match"] = match
    else:
        item["evaluation"]["check"] = check
    return item


LOGS_INIT = "mkdir -p /root/data && touch /root/data/a.log /root/data/b.log /root/data/c.log /root/data/d.txt"
COUNT_LOGS = "ls /root/data/*.log | wc -l"
GREETING = "Create a file /root/greeting.txt that contains the single line hello world."
INT_MATCH = {"language": "python", "code": "import sys\nsys.exit(0 if int(sys.argv[1]) == int(sys.argv[2]) else 1)"}


def os_replies():
    std = OSEnv.load_tasks(split="std")[0].prompt
    return [   # candidate: outcome
        block(os_item("How many .log files are in /root/data?", COUNT_LOGS, LOGS_INIT, match="3")),   # 0 kept
        block(os_item(GREETING, "echo 'hello world' > /root/greeting.txt",                               # 1 kept
                      check=[{"language": "bash", "code": "grep -qx 'hello world' /root/greeting.txt"}])),
        block(os_item("How many directories are there in /srv/projects?", "ls -d /srv/projects/*/ | wc -l",  # 2 kept
                      "mkdir -p /srv/projects/a /srv/projects/b /srv/projects/c/d", check=[None, INT_MATCH])),
        block(os_item("How many .txt files are in /root/data?", "ls /root/data/*.txt | wc -l", LOGS_INIT,   # 3 example_fails
                      match="5")),
        block(os_item("What is the hostname of this machine?", "hostname",                                  # 4 check_passes_wrong
                      check=[None, {"language": "bash", "code": "exit 0"}])),
        block(os_item(std, "echo 1", match="1")),                                                          # 5 contaminated
        '```json\n{"description": "Count the users", "evaluation": {"match": \n```',                         # 6 malformed
        block(os_item("how many .LOG files are in /root/data", COUNT_LOGS, LOGS_INIT, match="3")),         # 7 duplicate of 0
        block(os_item("Which file in /opt is the newest?", "ls -t /opt | head -1", "exit 3", match="x")),  # 8 init_failed
        block({"description": "Count lines of the script.",                                               # 9 bad_format
               "evaluation": {"match": "3", "example": {"file": "../../../etc/passwd"}}}),
        block(os_item(GREETING[:-1] + ", please.", "echo 'hello world' > /root/greeting.txt",            # 10 near_duplicate of 1
                      check=[{"language": "bash", "code": "grep -qx 'hello world' /root/greeting.txt"}])),
    ]


PETS = {"table_name": "pets", "table_info": {
    "columns": [{"name": "name", "type": "TEXT"}, {"name": "species", "type": "TEXT"}, {"name": "age", "type": "TEXT"}],
    "rows": [["Rex", "dog", "4"], ["Tom", "cat", "2"], ["Bolt", "dog", "7"], ["Nemo", "fish", "1"], ["Lady", "dog", "3"]]}}
COUNT_DOGS = "SELECT COUNT(*) FROM `pets` WHERE `species` = 'dog';"


def db_item(description, kind, label=None, query=None, table=PETS):
    item = {"description": description, "type": [kind], "table": table}
    if query is not None:
        item["sql"] = {"query": query}
    if label is not None:
        item["label"] = label
    return item


def db_replies():
    std = DBEnv.load_tasks(split="std")[0].data
    broken = {"table_name": "pets", "table_info": {"columns": PETS["table_info"]["columns"],
                                                   "rows": [["Rex", "dog"]]}}
    return [
        block(db_item("How many pets are dogs?", "counting", ["3"], COUNT_DOGS)),                             # 0 kept
        block(db_item("Set the age of Rex to 5.", "UPDATE", ["UPDATE `pets` SET `age` = '5' WHERE `name` = 'Rex'"])),  # 1 kept
        block(db_item("Remove every parrot from the table.", "DELETE", ["DELETE FROM `pets` WHERE `species` = 'parrot'"])),  # 2 no_change
        block(db_item("How old is the oldest cat?", "aggregation-MAX", None, "SELEC MAX(`age`) FROM `pets`")),  # 3 sql_error
        block(db_item("Which pets are dragons?", "other", None, "SELECT `name` FROM `pets` WHERE `species` = 'dragon'")),  # 4 empty_answer
        block(db_item("How many pets are cats?", "counting", None,                                            # 5 table_error
                      "SELECT COUNT(*) FROM `pets` WHERE `species` = 'cat'", table=broken)),
        block({k: std[k] for k in ("description", "type", "table", "label", "sql") if k in std}),              # 6 contaminated
        block(db_item("What is the total age of all dogs?", "aggregation-SUM", ["7"],                         # 7 label_mismatch
                      "SELECT SUM(`age`) FROM `pets` WHERE `species` = 'dog'")),
        "Sure! Here is a task about a table of pets: count the dogs.",                                       # 8 malformed
        block(db_item("How many pets are dogs in the table?", "counting", None, COUNT_DOGS)),                 # 9 near_duplicate of 0
        block(db_item("Add a new pet named Kiwi.", "INSERT")),                                                # 10 bad_format
    ]


OS_REASONS = {3: "example_fails", 4: "check_passes_wrong", 5: "contaminated", 6: "malformed", 7: "duplicate",
              8: "init_failed", 9: "bad_format", 10: "near_duplicate"}
DB_REASONS = {2: "no_change", 3: "sql_error", 4: "empty_answer", 5: "table_error", 6: "contaminated",
              7: "label_mismatch", 8: "malformed", 9: "near_duplicate", 10: "bad_format"}


def run(args, **kw):
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, **kw)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@needs_sandbox
def test_instruct_keeps_valid_tasks_and_collect_runs_them(tmp_path):
    out = tmp_path / "instruct"
    replies = os_replies() + db_replies()
    with ChatServer(replies=replies) as server:
        stdout = run(["00_instruct.py", "--env=os,db", f"--n={len(replies) // 2}", "--workers=1", "--model=teacher",
                      f"--base_url={server.url}", f"--out_dir={out}", "--seed=3"])
        assert len(server.requests) == len(replies)
        assert all(r["model"] == "teacher" and r["temperature"] == 0.7 for r in server.requests)
    report = json.loads((out / "report.json").read_text())
    assert report["per_env"]["os"]["kept"] == 3 and report["per_env"]["db"]["kept"] == 2, stdout
    got = {(r["env"], r["candidate"]): r["reason"] for r in report["rejected"]}
    assert got == {**{("os", i): r for i, r in OS_REASONS.items()}, **{("db", i): r for i, r in DB_REASONS.items()}}
    assert report["per_env"]["os"]["rejected"] == {r: 1 for r in OS_REASONS.values()}
    details = {(r["env"], r["candidate"]): r["detail"] for r in report["rejected"]}
    assert "answer(1)" in details[("os", 3)] and "expects '5'" in details[("os", 3)]
    assert "None" in details[("os", 4)] and "not done" in details[("os", 4)]
    assert "os/1/" in details[("os", 5)] and "dev task" not in details[("os", 7)]
    assert "candidate 0" in details[("os", 7)] and "candidate 1" in details[("os", 10)]
    assert "exited 3" in details[("os", 8)] and "inline 'code'" in details[("os", 9)]
    assert "parrot" in details[("db", 2)] and "SELEC" in details[("db", 3)] and "db/standard-0" in details[("db", 6)]
    assert "['7']" in details[("db", 7)] and "candidate 0" in details[("db", 9)]
    candidates = [r for _, r in read_jsonl(str(out / "candidates.jsonl"))]
    assert len(candidates) == len(replies) and sum(c["reason"] is None for c in candidates) == 5

    # the outputs are task files of the envs' own formats, with provenance
    os_tasks = OSEnv.load_tasks(str(out / "os_tasks.json"))
    assert [t.prompt for t in os_tasks] == ["How many .log files are in /root/data?", GREETING,
                                            "How many directories are there in /srv/projects?"]
    raw = json.loads((out / "os_tasks.json").read_text())
    assert raw[0]["provenance"]["teacher"]["model"] == "teacher" and raw[0]["provenance"]["seed"] == 3
    assert raw[2]["provenance"]["candidate"] == 2 and raw[0]["provenance"]["prompt_version"]
    db_tasks = DBEnv.load_tasks(str(out / "db_tasks.jsonl"))
    assert [t.data["label"] for t in db_tasks] == [["3"], ["UPDATE `pets` SET `age` = '5' WHERE `name` = 'Rex'"]]
    assert db_tasks[0].prompt.endswith("The name of this table is pets, and the headers of this table are name,species,age.")

    # 01_collect.py takes them like AgentBench's: the expert (example / gold SQL) solves every one
    for env, file, count in (("os", "os_tasks.json", 3), ("db", "db_tasks.jsonl", 2)):
        run(["01_collect.py", f"--env={env}", f"--tasks={out / file}", "--agent=expert", "--workers=2",
             f"--out_dir={tmp_path / 'raw'}"])
        episodes = [r for _, r in read_jsonl(str(tmp_path / "raw" / f"{env}.jsonl"))]
        assert len(episodes) == count and all(r["success"] and r["finish"] == "answered" for r in episodes), episodes


def test_prompts_are_seeded_and_show_dev_tasks():
    shots = examples("db")
    a = [make_candidate("db", i, 0, shots, 2).messages for i in range(4)]
    assert a == [make_candidate("db", i, 0, shots, 2).messages for i in range(4)]
    assert a != [make_candidate("db", i, 1, shots, 2).messages for i in range(4)]
    candidate = make_candidate("db", 0, 0, shots, 2)
    prompt = candidate.messages[0]["content"]
    assert f"type {candidate.kind}," in prompt and candidate.topic in prompt and prompt.count("```json") == 3
    dev = {json.dumps(item["description"]) for _, item, _ in shots}
    assert sum(d in prompt for d in dev) == 2   # two dev tasks as examples


def test_os_task_json_round_trips_the_dev_tasks():
    for task in OSEnv.load_tasks(split="dev"):
        assert parse_task(os_task_json(task.data), "/nonexistent", task.id) == task.data


def test_parse_reply():
    assert parse_reply('ok\n```json\n{"a": 1}\n```\nbye') == {"a": 1}
    assert parse_reply('here: {"a": {"b": 2}} done') == {"a": {"b": 2}}
    for bad in ("no json here", "```json\n[1, 2]\n```", '{"a": '):
        with pytest.raises(ValueError):
            parse_reply(bad)


def test_template_teacher_derives_db_tasks_that_check_out_and_the_explorer_solves(tmp_path):
    """--agent=template (no LLM): every DB task type is written from a dev table, checked in the
    real SQLite env like a teacher's task (labels from running the query), decontaminated against
    the std set, and the explorer solves the kept tasks through 01_collect.py."""
    from agentune.derive import WORDINGS
    out = tmp_path / "instruct"
    stdout = run(["00_instruct.py", "--env=db", "--agent=template", "--n=40", "--workers=2", f"--out_dir={out}"])
    report = json.loads((out / "report.json").read_text())["per_env"]["db"]
    assert report["candidates"] == 40 and report["kept"] >= 30, stdout
    assert set(report["rejected"]) <= {"contaminated", "no_table", "duplicate", "near_duplicate"}, report
    tasks = DBEnv.load_tasks(str(out / "db_tasks.jsonl"))
    dev_tables = {t.data["table"]["table_name"] for t in DBEnv.load_tasks(split="dev")}
    assert {t.data["table"]["table_name"] for t in tasks} <= dev_tables       # never a std table
    assert len({t.data["type"][0] for t in tasks}) >= 8 and set(t.data["type"][0] for t in tasks) <= set(WORDINGS)
    for t in tasks:   # a query's label is what its SELECT returns; a change has its statement
        assert t.data["label"] and (t.data["type"][0] in ("INSERT", "UPDATE", "DELETE")) != bool(t.data.get("sql"))
        assert t.data["provenance"]["teacher"]["kind"] == "template"
        assert t.data["provenance"]["topic"] == "dev table " + t.data["table"]["table_name"]
    again = tmp_path / "again"
    run(["00_instruct.py", "--env=db", "--agent=template", "--n=40", "--workers=1", f"--out_dir={again}"])
    assert (again / "db_tasks.jsonl").read_text() == (out / "db_tasks.jsonl").read_text()   # seeded
    run(["01_collect.py", "--env=db", f"--tasks={out / 'db_tasks.jsonl'}", "--agent=explorer", "--workers=2",
         f"--out_dir={tmp_path / 'raw'}"])
    episodes = [r for _, r in read_jsonl(str(tmp_path / "raw" / "db.jsonl"))]
    assert len(episodes) == len(tasks) and sum(r["success"] for r in episodes) >= 0.9 * len(tasks)


def test_template_teacher_is_db_only():
    done = subprocess.run([sys.executable, os.path.join(REPO, "00_instruct.py"), "--env=os", "--agent=template"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0 and "--env=db" in done.stdout + done.stderr
