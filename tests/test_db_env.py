"""The DB environment against real SQLite and a real MariaDB server these tests start and stop.

The expert's per-task outcomes on the dev set are printed (run with -s to see them):
    .venv/bin/python -m pytest -s tests/test_db_env.py -k query_report
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from agentune.envs.base import Task
from agentune.envs.db_env import INSTRUCTIONS, DatabaseFailure, DBEnv, score_answer
from agentune.mariadb import MariaDBServer, find_mariadbd, remove_stale_servers
from agentune.records import DataError

TASKS = DBEnv.load_tasks()  # the public dev set
MODIFICATIONS = [t for t in TASKS if t.data["type"][0] in ("INSERT", "UPDATE", "DELETE")]
QUERIES = [t for t in TASKS if t not in MODIFICATIONS]

# dev query tasks whose gold SQL returns the label (the rest: broken gold SQL or wrong labels,
# see test_expert_query_report); measured, and kept here so that a regression shows
EXPERT_QUERY_SUCCESSES = {
    "sqlite": {"dev-3", "dev-4", "dev-9", "dev-14"},
    "mysql": {"dev-3", "dev-4", "dev-9", "dev-10", "dev-14"},
}
# where the two backends legitimately disagree on the expert's reward
BACKEND_DIFFERENCES = {
    "dev-5": "MySQL rejects the table's empty column name (so did AgentBench's MySQL): env_error",
    "dev-10": "`Frequency MHz` < 107.7 on a TEXT column: MySQL compares numbers, SQLite text",
}


def require_mariadbd():
    if not find_mariadbd():
        pytest.skip("mariadbd is not installed (Debian package mariadb-server, installed by scripts/setup.d/20-apt.sh)")


@pytest.fixture(scope="module")
def mariadb():
    require_mariadbd()
    server = MariaDBServer().start()
    yield server
    process, directory = server.process, server.dir
    server.stop()
    assert process.poll() is not None and not os.path.exists(directory), "the server left something behind"


@pytest.fixture(params=["sqlite", "mysql"])
def env(request):
    settings = request.getfixturevalue("mariadb").settings if request.param == "mysql" else {}
    env = DBEnv(**settings)
    yield env
    env.close()


def play(env, task, replies):
    """Reset, then step the given replies until the episode ends; returns the steps."""
    env.reset(task)
    steps = []
    for reply in replies:
        steps.append(env.step(reply))
        if steps[-1].done:
            break
    return steps


def run_expert(env, task):
    """(final step, conversation) of the expert on a task; a task the server cannot set up ends
    as env_error, as the rollout records it."""
    try:
        messages = env.reset(task)
    except DatabaseFailure as e:
        return None, [str(e)]
    for _ in range(env.max_turns):
        reply = env.expert_reply()
        step = env.step(reply)
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": step.observation}]
        if step.done:
            return step, messages
    raise AssertionError("the episode did not end within max_turns")


@pytest.fixture(scope="module")
def expert_runs(mariadb):
    """The expert on every dev task, on both backends (computed once for several tests)."""
    runs = {}
    for backend, settings in [("sqlite", {}), ("mysql", mariadb.settings)]:
        env = DBEnv(**settings)
        runs[backend] = {task.id: run_expert(env, task) for task in TASKS}
        env.close()
    return runs


def operation(sql):
    return f"I will run a query.\nAction: Operation\n```sql\n{sql}\n```"


def answer(values):
    return f"Done.\nAction: Answer\nFinal Answer: {values}"


def crafted_task(kind, label, sql=None):
    columns = ["Name", "Floors", "City"]
    rows = [["Capitol Square", "26", "Columbus"], ["Café Royal", "12", "Dover"], ["LeVeque Tower", "47", "Columbus"]]
    data = {"description": "crafted", "add_description": "The name of this table is Towers.",
            "type": [kind], "label": label, "sql": {"query": sql} if sql else {},
            "table": {"table_name": "Towers", "table_info": {"columns": [{"name": c, "type": "TEXT"} for c in columns],
                                                             "rows": rows}}}
    return Task(id="crafted", prompt="crafted", data=data)


# --- tasks and prompt ----------------------------------------------------------------------------

def test_std_set_runs_past_its_broken_tasks(tmp_path):
    """AgentBench's std set (standard.jsonl, 300 tasks): 2 tables have a row with the wrong number
    of values. They end as task_error with their file:line, are scored 0 and listed; the rest run."""
    from agentune.agents import make_agent
    from agentune.envs.base import TaskError
    from agentune.rollout import run_episodes
    std = DBEnv.load_tasks(split="std")
    assert len(std) == 300 and not {t.prompt for t in std} & {t.prompt for t in TASKS}
    broken = {t.id: t.data["task_error"] for t in std if t.data.get("task_error")}
    assert sorted(broken) == ["standard-13", "standard-14", "standard-17", "standard-77"]
    assert "standard.jsonl:18: table row" in broken["standard-17"]
    assert "two columns named" in broken["standard-13"]       # MySQL rejects that table too
    with pytest.raises(TaskError, match="standard.jsonl:18"):
        DBEnv().reset(std[17])
    picked = [std[16], std[17], std[18]]
    summary = run_episodes("db", picked, make_agent("expert"), str(tmp_path / "db.jsonl"), workers=1)
    assert summary["episodes"] == 3 and summary["finish"].get("task_error") == 1
    assert summary["finish"].get("answered") == 2


def test_load_tasks_and_prompt(tmp_path):
    assert len(TASKS) == 60 and len(MODIFICATIONS) == 40
    assert [t.id for t in TASKS[:2]] == ["dev-0", "dev-1"]
    env = DBEnv()
    messages = env.reset(TASKS[0])
    env.close()
    # AgentBench: instructions, "Ok.", then the question and the table's name and headers
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == INSTRUCTIONS and messages[1]["content"] == "Ok."
    assert messages[2]["content"] == TASKS[0].data["description"] + "\n" + TASKS[0].data["add_description"]
    assert "Action: Operation\n```sql" in INSTRUCTIONS and 'Final Answer: ["ANSWER1", "ANSWER2", ...]' in INSTRUCTIONS

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"description": "q", "label": [], "type": ["other"]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: not a DBBench task"):
        DBEnv.load_tasks(str(bad))


def test_parse_action():
    parse = DBEnv.parse_action
    assert parse("Let me look.\nAction: Operation\n```sql\nSELECT *\nFROM t;\n```") == ("operation", "SELECT * FROM t;")
    assert parse('So.\nAction: Answer\nFinal Answer: ["a", "b"]') == ("answer", ' ["a", "b"]')
    assert parse('Thought\nFinal Answer: ["x"]\nmore') == ("answer", ' ["x"]')   # AgentBench needs no Action line
    assert parse("Action: Operation\nSELECT 1") is None                           # no ```sql block
    assert parse("Action: Operation\n```\nSELECT 1\n```") is None                 # not marked sql
    assert parse("Action: Answer\n") is None                                      # no Final Answer line
    assert parse('Final Answer: ["x"]') is None                                   # must start a line after text
    assert parse("I think it is 5.") is None


# --- scoring -------------------------------------------------------------------------------------

def test_score_answer_like_agentbench():
    assert score_answer(' ["26"]', ["26"])
    assert score_answer("[26.0]", ["26"])                # one value: float-equal
    assert score_answer('["2011"]', ["2011.0"])
    assert score_answer("26", ["26"])                    # a bare value
    assert score_answer('["b", "a"]', ["a", "b"])        # several: the sets
    assert not score_answer("[1, 2]", ["1", "2"])       # several: compared with their types, as upstream
    assert not score_answer('"ab"', ["ab"])              # upstream's list() splits a lone string
    assert not score_answer(" John", ["John"])           # not a literal: the raw text, unstripped
    assert score_answer(' ["John"]', ["John"])
    assert not score_answer("[[1], [2]]", ["1", "2"])    # unhashable values: wrong, not an error
    assert score_answer('["none"]', ["none"])
    assert not score_answer('["27"]', ["26"])
    assert not score_answer('["a"]', ["a", "b"])
    assert not score_answer('["a", "b", "c"]', ["a", "b"])
    assert not score_answer("[]", ["none"])
    assert not score_answer('["giza"]', ["Giza"])        # answer strings are compared exactly (AgentBench)
    assert not score_answer('__import__("os").getcwd()', [os.getcwd()])  # parsed, never run


def test_text_compares_like_mysql(env):
    """Case, accents and trailing spaces do not count in comparisons, grouping and MIN/MAX, on
    SQLite as on MySQL (the labels assume MySQL)."""
    steps = play(env, crafted_task("other", ["26", "12"]), [
        operation("SELECT Floors FROM Towers WHERE Name = 'capitol SQUARE'"),
        operation("SELECT Floors FROM Towers WHERE Name = 'CAFE ROYAL '"),
        operation("SELECT COUNT(DISTINCT City), MAX(Name) FROM Towers WHERE City IN ('columbus', 'DOVER')"),
        operation("SELECT Name FROM Towers WHERE Name LIKE '%tower%'"),
        answer('["26", "12"]'),
    ])
    assert [s.observation for s in steps[:4]] == ["[('26',)]", "[('12',)]", "[(2, 'LeVeque Tower')]", "[('LeVeque Tower',)]"]
    assert steps[-1].done and steps[-1].success and steps[-1].finish == "answered" and steps[-1].reward == 1.0


def test_modification_scored_by_final_table(env):
    task = crafted_task("UPDATE", ["UPDATE Towers SET Floors = '30' WHERE Name = 'Capitol Square'"])
    right = operation("UPDATE `Towers` SET `Floors`='30' WHERE `Name`='capitol square'")
    cases = [
        ([right, answer('["none"]')], "answered", True),
        ([operation("UPDATE Towers SET Floors = '31' WHERE Name = 'Capitol Square'"), answer("[]")], "answered", False),
        ([operation("UPDATE Towers SET Name = 'capitol square' WHERE Floors = '26'"), answer("[]")], "answered", False),
        ([operation("SELECT * FROM Towers"), answer("[]")], "answered", False),
        ([operation("DROP TABLE Towers"), answer("[]")], "answered", False),
        # AgentBench scores the table however the episode ends
        ([right, "I am done."], "invalid_format", True),
    ]
    for replies, finish, success in cases:
        final = play(env, task, replies)[-1]
        assert (final.done, final.finish, final.success, final.reward) == (True, finish, success, float(success)), replies


def test_gold_statement_failure_is_reported(env):
    task = crafted_task("INSERT", ["INSERT INTO Towers VALUES ('Don\\'t', '1')"] if env.backend == "sqlite"
                        else ["INSERT INTO NoSuchTable VALUES (1)"])
    final = play(env, task, [answer("[]")])[-1]
    assert final.done and not final.success and "gold statement failed" in final.info["gold_error"]


# --- episode mechanics ---------------------------------------------------------------------------

def test_invalid_format_ends_episode(env):
    for reply in ["The answer is 26.", "Action: Operation\nSELECT 1", "Action: Operation\n```python\nprint(1)\n```"]:
        final = play(env, crafted_task("other", ["26"]), [reply])[-1]
        assert final.done and final.finish == "invalid_format" and final.reward == 0.0
        assert final.info["valid_format"] is False


def test_sql_error_is_an_observation(env):
    steps = play(env, crafted_task("other", ["26"]), [operation("SELECT Height FROM Towers"),
                                                      operation("SELECT Floors FROM Towers LIMIT 1")])
    assert not steps[0].done and steps[0].info["valid_action"] is False
    expected = "no such column: Height" if env.backend == "sqlite" else "1054 (42S22): Unknown column 'Height'"
    assert expected in steps[0].observation
    assert steps[1].observation == "[('26',)]" and not steps[1].done


def test_round_limit(env):
    """15 operations run; the 16th reply must answer (AgentBench std: max_round = 15)."""
    assert DBEnv.max_round == 15 and DBEnv.max_turns == 16
    task = crafted_task("INSERT", ["INSERT INTO Towers VALUES ('A', '1', 'B')"])
    steps = play(env, task, [operation("SELECT COUNT(*) FROM Towers")] * 15
                 + [operation("INSERT INTO Towers VALUES ('A', '1', 'B')")])
    assert [s.done for s in steps] == [False] * 15 + [True]
    assert steps[-1].finish == "max_turns" and not steps[-1].success  # the 16th was not executed
    steps = play(env, task, [operation("SELECT COUNT(*) FROM Towers")] * 15 + [answer("[3]")])
    assert steps[-1].finish == "answered"
    # upstream reads a final answer from the 16th reply whatever its action line says
    query = crafted_task("counting", ["3"])
    steps = play(env, query, [operation("SELECT COUNT(*) FROM Towers")] * 15
                 + [operation("SELECT 1") + "\nFinal Answer: [3]"])
    assert steps[-1].finish == "max_turns" and steps[-1].success


def test_runaway_statement_is_interrupted(env):
    env.statement_timeout = 1.0
    huge_join = "SELECT COUNT(*) FROM " + ", ".join(f"information_schema.COLLATIONS c{i}" for i in range(5))
    runaway = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"
               if env.backend == "sqlite" else huge_join)  # MariaDB caps recursion at 1000 rounds
    start = time.monotonic()
    steps = play(env, crafted_task("other", ["26"]), [
        operation(runaway),
        operation("SELECT Floors FROM Towers WHERE Name = 'Capitol Square'")])
    assert time.monotonic() - start < 8
    assert not steps[0].done and ("interrupted" in steps[0].observation or "max_statement_time" in steps[0].observation)
    assert steps[1].observation == "[('26',)]"


def test_fresh_database_per_episode(env, request):
    task = crafted_task("other", ["3"])
    play(env, task, [operation("DELETE FROM Towers")])
    steps = play(env, task, [operation("SELECT COUNT(*) FROM Towers")])
    assert steps[0].observation == "[(3,)]"
    env.close()
    if env.backend == "mysql":  # every episode's databases are dropped
        import pymysql
        conn = pymysql.connect(unix_socket=request.getfixturevalue("mariadb").socket, user="root")
        with conn.cursor() as cursor:
            cursor.execute(r"SHOW DATABASES LIKE 'agentune\_%'")
            assert cursor.fetchall() == ()
        conn.close()


def test_agent_sql_cannot_touch_the_host(env, tmp_path):
    target = tmp_path / "written.db"
    if env.backend == "sqlite":
        attempts = [f"ATTACH DATABASE '{target}' AS x", f"VACUUM INTO '{target}'"]
    else:
        attempts = [f"SELECT 1 INTO OUTFILE '{target}'", "SELECT LOAD_FILE('/etc/hostname')", "SHUTDOWN",
                    "CREATE DATABASE elsewhere"]
    steps = play(env, crafted_task("other", ["26"]), [operation(sql) for sql in attempts])
    assert all(not s.done for s in steps)
    for step in steps:
        assert step.info["valid_action"] is False or step.observation == "[(None,)]", step.observation
    assert not target.exists()


def test_mysql_episode_account_sees_only_its_own_database(mariadb):
    """Each episode's SQL runs as an account of its own: it cannot list, read or drop another
    episode's database, raise its own statement time limit, or outlive its episode."""
    import pymysql
    mine, other = DBEnv(**mariadb.settings), DBEnv(**mariadb.settings)
    try:
        mine.reset(crafted_task("other", ["26"]))
        other.reset(crafted_task("other", ["26"]))
        theirs = other.db.db
        shown = mine.step(operation("SHOW DATABASES")).observation
        assert mine.db.db in shown and theirs not in shown
        for sql in (f"DROP DATABASE `{theirs}`", f"SELECT * FROM `{theirs}`.Towers",
                    "CREATE USER 'x'@'%'", "SET GLOBAL max_statement_time = 0"):
            step = mine.step(operation(sql))
            assert step.info["valid_action"] is False and ("denied" in step.observation.lower()
                                                           or "1227" in step.observation), (sql, step.observation)
        assert other.step(operation("SELECT Floors FROM Towers LIMIT 1")).observation == "[('26',)]"
        # raising its own limit lasts one statement at most: the next one runs under the cap again
        mine.statement_timeout = mine.db.statement_timeout = 1.0
        assert mine.step(operation("SET SESSION max_statement_time = 0")).info["valid_action"]
        step = mine.step(operation("SELECT SLEEP(5)"))
        assert step.observation in ("[(1,)]", "1969 (70100): Query execution was interrupted (max_statement_time exceeded)"), step.observation
        user = mine.db.user
    finally:
        mine.close()
        other.close()
    root = pymysql.connect(unix_socket=mariadb.socket, user="root")
    with root.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mysql.user WHERE User = %s", (user,))
        assert cursor.fetchone()[0] == 0   # the episode's account is gone with it
    root.close()


def test_sqlite_memory_is_capped():
    """SQLite runs in the collector: a statement cannot make a huge value or fill memory."""
    env = DBEnv()
    try:
        env.reset(crafted_task("other", ["26"]))
        step = env.step(operation("SELECT length(zeroblob(1000000000))"))
        assert step.info["valid_action"] is False and "too big" in step.observation
        env.statement_timeout = env.db.statement_timeout = 2.0
        step = env.step(operation("CREATE TABLE big AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL "
                                  "SELECT n + 1 FROM r) SELECT n, zeroblob(4000) AS pad FROM r"))
        assert step.info["valid_action"] is False
        assert "full" in step.observation or "interrupted" in step.observation, step.observation
        assert env.step(operation("SELECT Floors FROM Towers LIMIT 1")).observation == "[('26',)]"
    finally:
        env.close()


def test_lost_server_connection_is_env_error(mariadb):
    import pymysql
    env = DBEnv(backend="mysql", host="127.0.0.1", port=mariadb.port, user="agentune")  # over TCP this time
    task = crafted_task("other", ["26"])
    env.reset(task)
    assert env.step(operation("SELECT Floors FROM Towers LIMIT 1")).observation == "[('26',)]"
    admin = pymysql.connect(unix_socket=mariadb.socket, user="root")
    with admin.cursor() as cursor:
        cursor.execute(f"KILL {env.db.agent_conn.thread_id()}")
    admin.close()
    step = env.step(operation("SELECT Floors FROM Towers LIMIT 1"))
    assert step.done and step.finish == "env_error" and "lost connection" in step.info["error"].lower()
    steps = play(env, task, [operation("SELECT Floors FROM Towers LIMIT 1")])  # reconnects
    assert steps[0].observation == "[('26',)]"
    env.close()


# --- the expert on the dev set -------------------------------------------------------------------

def test_expert_solves_every_modification(expert_runs):
    for backend, runs in expert_runs.items():
        failed = [task.id for task in MODIFICATIONS if not (runs[task.id][0] and runs[task.id][0].success)]
        assert failed == [], f"{backend}: expert failed {failed}"
        assert all(runs[t.id][0].finish == "answered" for t in MODIFICATIONS)


def test_expert_query_report(expert_runs):
    """The expert answers only what the gold SQL returned; the environment scores. Prints why
    each dev query task succeeds or fails."""
    for backend, runs in expert_runs.items():
        print(f"\n{backend}: expert on the {len(QUERIES)} dev query tasks")
        successes = set()
        for task in QUERIES:
            final, messages = runs[task.id]
            if final is None:
                cause = f"env_error: {messages[0][:90]}"
            else:
                observation = messages[4]["content"]
                if final.success:
                    cause = "ok"
                    successes.add(task.id)
                elif observation.startswith("[") and not final.success:
                    cause = f"SQL result {observation[:60]} != label {task.data['label'][:4]}"
                else:
                    cause = f"gold SQL fails: {observation[:90]}"
                # the expert's answer is exactly what its SQL returned, so success is the scorer's call
                assert final.success == score_answer(final.info["answer"], task.data["label"])
            print(f"  {task.id:7s} {task.data['type'][0]:16s} {cause}")
        print(f"  {backend} query-type expert success: {len(successes)}/{len(QUERIES)}")
        assert successes == EXPERT_QUERY_SUCCESSES[backend]


def test_backends_agree(expert_runs):
    differ = {}
    for task in TASKS:
        rewards = [run[task.id][0].reward if run[task.id][0] else None for run in expert_runs.values()]
        if rewards[0] != rewards[1]:
            differ[task.id] = rewards
    assert set(differ) == set(BACKEND_DIFFERENCES), differ


def test_server_dies_with_its_parent():
    """kill -9 of the process that started a server must not leave mariadbd running."""
    require_mariadbd()
    script = ("import sys, time; from agentune.mariadb import MariaDBServer\n"
              "server = MariaDBServer().start(); print(server.process.pid, server.dir, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pid, directory = parent.stdout.readline().split()
    server_pid = int(pid)
    assert os.path.exists(f"/proc/{server_pid}")
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{server_pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{server_pid}"), "mariadbd outlived its killed parent"
    remove_stale_servers(os.path.dirname(directory))  # what the next start does
    assert not os.path.exists(directory)
