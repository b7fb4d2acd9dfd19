"""DBBench, AgentBench's database task (the version AgentTuning collected and evaluated with).

Each episode gets a fresh database holding the task's one table, every column TEXT as in
AgentBench. The conversation starts as AgentBench's: its instructions, the agent's "Ok." (the
DB task has no worked example), then the question plus the table's name and headers. Every
reply is a thought and one action:

    Action: Operation              or      Action: Answer
    ```sql                                 Final Answer: ["ANSWER1", "ANSWER2", ...]
    SELECT ...;
    ```

The environment runs the first SQL block and shows the raw result (Python repr of the row
tuples, or the database's error message, cut at 800 characters), up to 5 operations and then a
last reply that must answer (AgentBench's max_round = 5, so 6 replies in all). A reply that is
neither ends the episode (invalid_format), as in AgentBench.

Scoring (AgentBench):
- query types (other, counting, comparison, ranking, aggregation-*): exactly AgentBench's
  comparison (score_answer): one value float-equal or equal to one label value, else equal sets;
  no stripping or casting beyond upstream's. The values come out of the same table data the
  labels were made from, so case matters only inside the database, where it is handled like
  MySQL (below).
- INSERT/UPDATE/DELETE: the final table must equal, as a multiset of rows, the table made by
  running the gold statement(s) on a fresh copy in the same backend (AgentBench compares an MD5
  of the rows computed with MySQL functions, `answer_md5`, which only a MySQL server can make).
  As in AgentBench the table is scored however the episode ended; the answer text is ignored.

The expert replays the gold SQL (`label` for modifications, `sql.query` for queries) through
the database and answers exactly what its query returned (no rows or NULL is "none", the data's
word for no value); the environment scores it like any agent.

Backends: SQLite in memory (default), or a MySQL/MariaDB server (what AgentBench uses), given by
host/port/user/password/unix_socket, one database and one session per episode; `agentune.mariadb.MariaDBServer`
starts a private throwaway server. MySQL compares text case-, accent- and trailing-space-
insensitively by default and the labels assume it, so the SQLite columns use a collation with
those rules (=, <, ORDER BY, GROUP BY, DISTINCT, MIN/MAX; SQLite's LIKE ignores ASCII case
already). Differences that remain: a TEXT column against a number literal compares as text in
SQLite and as numbers in MySQL; double-quoted names are identifiers in SQLite and strings in
MySQL; MySQL's backslash escapes and functions (CONCAT, IF, ...) are not SQLite's; a table MySQL
rejects (an empty column name) is an env_error there. SQL errors are observations, never
environment errors.
"""
import ast
import json
import os
import re
import sqlite3
import time
import unicodedata
import uuid

from agentune.envs.base import Env, Step, Task, TaskError
from agentune.paths import data_path
from agentune.records import DataError, expand_paths, read_jsonl

# AgentBench's instruction prompt (src/tasks/dbbench), verbatim
INSTRUCTIONS = """
I will ask you a question, then you should help me operate a MySQL database with SQL to answer the question.
You have to explain the problem and your solution to me and write down your thoughts.
After thinking and explaining thoroughly, every round you can choose to operate or to answer.
your operation should be like this:
Action: Operation
```sql
SELECT * FROM table WHERE condition;
```
You MUST put SQL in markdown format without any other comments. Your SQL should be in one line.
Every time you can only execute one SQL statement. I will only execute the statement in the first SQL code block. Every time you write a SQL, I will execute it for you and give you the output.
If you are done operating, and you want to commit your final answer, then write down:
Action: Answer
Final Answer: ["ANSWER1", "ANSWER2", ...]
DO NOT write this pattern unless you are sure about your answer. I expect an accurate and correct answer.
Your answer should be accurate. Your answer must be exactly the same as the correct answer.
If the question is about modifying the database, then after done operation, your answer field can be anything.
If your response cannot match any pattern I mentioned earlier, you will be judged as FAIL immediately.
Your input will be raw MySQL response, you have to deal with it by yourself.
"""

# AgentBench's parsing: the first "Action: X" line; an Operation needs a ```sql block, anything
# else must contain a "Final Answer:" line (the answer is the rest of that line)
ACTION_RE = re.compile(r"Action: (.*?)\n")
SQL_RE = re.compile(r"```sql\n([\s\S]*?)\n```")
ANSWER_RE = re.compile(r"\nFinal Answer:(.*)")

MODIFICATION_TYPES = ("INSERT", "UPDATE", "DELETE")
MAX_OBSERVATION_CHARS = 800  # AgentBench cuts longer results and appends "[TRUNCATED]"
MAX_ROWS = 10_000            # rows kept from one result (a runaway join cannot fill memory)
# an episode's database is capped: what one statement may build (a string or blob), how big the
# database and its temporary tables may grow, and how much server memory a MySQL session may use
MAX_VALUE_BYTES = 8 << 20
MAX_DATABASE_BYTES = 256 << 20
SQLITE_PROCESS_HEAP_BYTES = 4 << 30   # a backstop over all episodes of the collector process


class DatabaseFailure(Exception):
    """The database could not do its part (server gone, connection lost, the task's table rejected):
    an env_error, not an SQL error."""


class SQLError(Exception):
    """The statement failed: its message is the agent's observation."""


# ----------------------------------------------------------------------------------------------
# databases: a fresh one per episode

class Database:
    """One fresh database holding the task's table. Subclasses set it up and define quote(name),
    execute(sql) -> rows (at most MAX_ROWS; raises SQLError or DatabaseFailure) and close()."""
    table: dict
    table_ref: str      # how to name the task table in SQL, whatever the agent did to the session

    def table_rows(self):
        """The task table's rows, or None when the agent dropped or broke it."""
        columns = ", ".join(self.quote(c["name"]) for c in self.table["table_info"]["columns"])
        try:
            return self.execute_as_owner(f"SELECT {columns} FROM {self.table_ref}")
        except SQLError:
            return None

    def execute_as_owner(self, sql):
        """Our own statements (scoring): where the agent has an account of its own, not through it."""
        return self.execute(sql)


def table_values(table):
    # AgentBench stores str() of every cell in TEXT columns
    return [[str(v) for v in row] for row in table["table_info"]["rows"]]


# ----------------------------------------------------------------------------------------------
# SQLite backend: an in-memory database per episode

def mysql_text_key(text):
    """How MySQL/MariaDB's default collations see a string: case, accents and trailing spaces
    do not count."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().rstrip(" ")


def mysql_collation(a, b):
    ka, kb = mysql_text_key(a), mysql_text_key(b)
    return (ka > kb) - (ka < kb)


class SQLiteDatabase(Database):
    @staticmethod
    def quote(name):
        return '"' + name.replace('"', '""') + '"'

    def __init__(self, table, statement_timeout):
        self.table, self.table_ref = table, self.quote(table["table_name"])
        self.statement_timeout = statement_timeout
        self.deadline = float("inf")
        # autocommit (isolation_level=None) like AgentBench's commit after every statement
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        # no ATTACH (nor VACUUM INTO, which attaches): the agent's SQL must not write host files
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        # SQLite runs inside the collector: cap what the agent's SQL can allocate. No value larger
        # than MAX_VALUE_BYTES (zeroblob(1e9) fails at once), the database and its temporary
        # tables (sorts, materialised CTEs, kept in memory) at most MAX_DATABASE_BYTES each, and
        # SQLite's whole heap in this process as a backstop; time: the progress handler below
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        pages = MAX_DATABASE_BYTES // 4096
        for pragma in ("page_size = 4096", f"max_page_count = {pages}", "temp_store = MEMORY",
                       f"temp.max_page_count = {pages}", f"hard_heap_limit = {SQLITE_PROCESS_HEAP_BYTES}"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.create_collation("mysql_ci", mysql_collation)
        self.conn.set_progress_handler(lambda: time.monotonic() > self.deadline, 10_000)
        columns = [c["name"] for c in table["table_info"]["columns"]]
        column_defs = ", ".join(f"{self.quote(c)} TEXT COLLATE mysql_ci" for c in columns)
        self.conn.execute(f"CREATE TABLE {self.table_ref} ({column_defs})")
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {self.table_ref} VALUES ({marks})", table_values(table))

    def execute(self, sql):
        self.deadline = time.monotonic() + self.statement_timeout
        try:
            return self.conn.execute(sql).fetchmany(MAX_ROWS)
        except (sqlite3.Error, sqlite3.Warning, OverflowError) as e:
            if str(e) == "interrupted":
                raise SQLError(f"interrupted: the statement ran longer than {self.statement_timeout:g} s") from None
            raise SQLError(str(e)) from None
        finally:
            self.deadline = float("inf")

    def close(self):
        self.conn.close()


# ----------------------------------------------------------------------------------------------
# MySQL/MariaDB backend: a server database per episode, on its own connection (a fresh session)

class MySQLDatabase(Database):
    @staticmethod
    def quote(name):
        return "`" + name.replace("`", "``") + "`"

    def __init__(self, server, table, statement_timeout):
        """`server` names the administering account (it creates databases and accounts). The
        agent's SQL runs on a second connection, as an account made for this episode that can
        reach only this episode's database: it can neither see nor drop another episode's."""
        import pymysql
        self.table, self.conn, self.agent_conn = table, None, None
        self.statement_timeout = statement_timeout
        name = uuid.uuid4().hex[:16]
        self.db, self.user = f"agentune_{name}", f"ep_{name}"
        self.table_ref = f"{self.quote(self.db)}.{self.quote(table['table_name'])}"
        # TLS buys nothing on this machine and costs ~80 ms a connection (PyMySQL tries it by default)
        local = bool(server["unix_socket"]) or server["host"] in ("127.0.0.1", "localhost", "::1")
        options = dict(charset="utf8mb4", autocommit=True, connect_timeout=10,
                       read_timeout=statement_timeout + 60, write_timeout=60, ssl_disabled=local)
        try:
            self.conn = pymysql.connect(**server, **options)
        except pymysql.err.MySQLError as e:
            raise DatabaseFailure(f"cannot connect to the MySQL/MariaDB server: {e}") from e
        columns = [c["name"] for c in table["table_info"]["columns"]]
        rows = table_values(table)
        password = uuid.uuid4().hex
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {self.quote(self.db)} CHARACTER SET utf8mb4")
                cursor.execute(f"USE {self.quote(self.db)}")
                column_defs = ", ".join(f"{self.quote(c)} TEXT" for c in columns)
                cursor.execute(f"CREATE TABLE {self.quote(table['table_name'])} ({column_defs})")
                if rows:
                    marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
                    cursor.execute(f"INSERT INTO {self.quote(table['table_name'])} VALUES "
                                   + ", ".join([marks] * len(rows)), [v for row in rows for v in row])
                for host in ("localhost", "%"):
                    # (with a parameter, pymysql formats the text: the host '%' is written '%%')
                    cursor.execute(f"CREATE USER '{self.user}'@'{host.replace('%', '%%')}' IDENTIFIED BY %s",
                                   (password,))
                    # (`_` is a wildcard in a GRANT's database name: escaped, it names this one only)
                    cursor.execute(f"GRANT ALL ON {self.quote(self.db.replace('_', chr(92) + '_'))}.* "
                                   f"TO '{self.user}'@'{host}'")
        except pymysql.err.MySQLError as e:
            # e.g. MySQL rejects an empty column name (AgentBench's MySQL did too)
            self.close()
            raise DatabaseFailure(f"the server could not set up the task's table: {e}") from e
        try:
            self.agent_conn = pymysql.connect(**{**server, "user": self.user, "password": password},
                                              database=self.db, **options)
        except pymysql.err.MySQLError as e:
            self.close()
            raise DatabaseFailure(f"cannot connect as the episode's account: {e}") from e

    def execute(self, sql, as_admin=False):
        import pymysql
        try:
            with (self.conn if as_admin else self.agent_conn).cursor() as cursor:
                if not as_admin:
                    # the caps, set again before every statement: a session may change its own
                    # variables, but only for the statements after the SET (one statement per call)
                    cursor.execute(f"SET SESSION max_statement_time = {float(self.statement_timeout)}, "
                                   f"max_session_mem_used = {MAX_DATABASE_BYTES}, "
                                   f"max_heap_table_size = {MAX_DATABASE_BYTES}, tmp_table_size = {MAX_DATABASE_BYTES}")
                cursor.execute(sql)
                return list(cursor.fetchmany(MAX_ROWS))
        except pymysql.err.InterfaceError as e:
            raise DatabaseFailure(f"connection to the database server lost: {e}") from e
        except pymysql.err.MySQLError as e:
            code = e.args[0] if e.args else 0
            message = e.args[1] if len(e.args) > 1 else str(e)
            if not isinstance(code, int) or code >= 2000:  # client-side codes: server gone/unreachable
                raise DatabaseFailure(f"database server error {code}: {message}") from e
            # the text of mysql.connector (AgentBench's client), e.g. "1146 (42S02): Table ... doesn't exist"
            sqlstate = getattr(e, "sqlstate", None)
            raise SQLError(f"{code} ({sqlstate}): {message}" if sqlstate else f"{code}: {message}") from None

    def execute_as_owner(self, sql):
        # the administering account: the episode's account may have been used to break its session
        return self.execute(sql, as_admin=True)

    def close(self):
        if self.agent_conn is not None:
            try:
                self.agent_conn.close()
            except Exception:
                pass
            self.agent_conn = None
        if self.conn is None:
            return
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {self.quote(self.db)}")
                for host in ("localhost", "%"):
                    cursor.execute(f"DROP USER IF EXISTS '{self.user}'@'{host}'")
        except Exception:
            pass  # the connection is gone; a scratch server is thrown away whole
        try:
            self.conn.close()
        except Exception:
            pass
        self.conn = None


# ----------------------------------------------------------------------------------------------
# scoring

def score_answer(answer, label):
    """AgentBench's query scoring, exactly (src/tasks/dbbench metrics): the text after "Final
    Answer:" is evaluated as a Python literal and made a list (a literal that is not a sequence,
    or text that is not a literal, is one raw value, unstripped); one value against one label
    value is correct when float-equal, else when equal; otherwise the answer set must equal the
    label set, values compared with their types (the labels are strings, so [1, 2] is not
    ["1", "2"]), as upstream. A literal parser instead of eval() keeps agent output from running
    as code; it accepts what eval() accepts for literals."""
    try:
        values = list(ast.literal_eval(answer))
    except Exception:
        values = [answer]
    if len(values) == 1 and len(label) == 1:
        try:
            return float(values[0]) == float(label[0])
        except (ValueError, TypeError):
            return values[0] == label[0]
    try:
        return set(values) == set(label)
    except TypeError:   # an unhashable value (a nested list): wrong, as upstream
        return False


def same_table(rows, gold_rows):
    """Equal as multisets of rows, values compared exactly (as AgentBench's MD5 of the rows)."""
    if rows is None or gold_rows is None:
        return False
    as_text = lambda table: sorted(tuple(None if v is None else str(v) for v in row) for row in table)
    return as_text(rows) == as_text(gold_rows)


def one_line(sql):
    # AgentBench runs the SQL block with its newlines made spaces (string literals included)
    return sql.strip().replace("\n", " ")


def render_rows(rows):
    """The observation: AgentBench shows str() of the fetched row tuples, cut at 800 chars."""
    text = str([tuple(row) for row in rows])
    if len(text) > MAX_OBSERVATION_CHARS:
        text = text[:MAX_OBSERVATION_CHARS] + "[TRUNCATED]"
    return text


# ----------------------------------------------------------------------------------------------
# the environment

class DBEnv(Env):
    name = "db"
    max_round = 15         # AgentBench std.yaml: max_round 15 operations ...
    max_turns = max_round + 1   # ... then a reply that must answer
    max_reply_tokens = 128      # AgentBench's generation limit per reply
    test_split = "std"
    concurrency = "threads"

    def __init__(self, backend="sqlite", host="127.0.0.1", port=3306, user="root", password="",
                 unix_socket="", statement_timeout=10.0):
        if backend not in ("sqlite", "mysql"):
            raise ValueError(f"unknown db backend {backend!r}: use 'sqlite' or 'mysql' (MySQL or MariaDB server)")
        self.backend = backend
        self.server = dict(host=host, port=int(port), user=user, password=password,
                           unix_socket=unix_socket or None)
        self.statement_timeout = statement_timeout
        self.db = None         # this episode's database
        self.task = None

    # -- tasks --------------------------------------------------------------------------------

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """DBBench JSONL records. split: "std" (AgentBench's std test set, standard.jsonl: what
        05_eval.py evaluates on), "dev" (dev.jsonl: what 01_collect.py collects from, the default)
        or the stem of another file there; `path` (a file, glob or dir) instead means every task
        in it."""
        if split in ("collect", "eval"):
            raise SystemExit(f"db: split {split!r} is gone: collect from 'dev', evaluate on 'std'")
        if not path:
            stem = {"std": "standard", None: "dev", "": "dev"}.get(split, split)
            path = data_path("agentbench", "dbbench", f"{stem}.jsonl")
        tasks = []
        for file in expand_paths(path):
            file_stem = os.path.splitext(os.path.basename(file))[0]
            for index, (where, record) in enumerate(read_jsonl(file)):
                tasks.append(cls._task(f"{file_stem}-{index}", where, record))
        return tasks

    @staticmethod
    def _task(task_id, where, record):
        fix = ("each line needs description, add_description, type[0], label (a list) and "
               "table{table_name, table_info{columns[].name, rows}}")
        try:
            table = record["table"]
            columns = [c["name"] for c in table["table_info"]["columns"]]
            kind, label, rows = record["type"][0], record["label"], table["table_info"]["rows"]
            prompt = record["description"] + "\n" + record.get("add_description", "")
        except (KeyError, TypeError, IndexError):
            raise DataError(where, "not a DBBench task", fix) from None
        if not (table["table_name"] and columns and isinstance(rows, list) and isinstance(label, list)):
            raise DataError(where, "not a DBBench task", fix)
        names = [str(c).casefold() for c in columns]
        duplicate = next((c for c in columns if names.count(str(c).casefold()) > 1), None)
        if duplicate is not None:   # MySQL rejects such a CREATE TABLE too
            reason = f"{where}: the table has two columns named {duplicate!r}: the table cannot be created"
            print(f"note: {reason}; the task is scored as failed (task_error)")
            return Task(id=task_id, prompt=prompt, data={**record, "task_error": reason})
        bad = [i for i, row in enumerate(rows) if not isinstance(row, list) or len(row) != len(columns)]
        if bad:
            # the set runs on; this task is scored as a failure (upstream's INSERT of the table
            # fails the same way, leaving the agent no data) and listed with its reason
            reason = (f"{where}: table row {bad[0]} has {len(rows[bad[0]]) if isinstance(rows[bad[0]], list) else 'no list of'} "
                      f"values for {len(columns)} columns ({len(bad)} such row(s)): the table cannot be loaded")
            print(f"note: {reason}; the task is scored as failed (task_error)")
            return Task(id=task_id, prompt=prompt, data={**record, "task_error": reason})
        if kind not in MODIFICATION_TYPES and not (record.get("sql") or {}).get("query"):
            print(f"note: {where}: query task without sql.query (the expert cannot solve it)")
        return Task(id=task_id, prompt=prompt, data=record)

    # -- episodes -----------------------------------------------------------------------------

    def _open_database(self, table):
        if self.backend == "sqlite":
            return SQLiteDatabase(table, self.statement_timeout)
        return MySQLDatabase(self.server, table, self.statement_timeout)

    def _close_database(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    def reset(self, task):
        """Raises DatabaseFailure when the database cannot be set up (an env_error)."""
        self._close_database()
        if task.data.get("task_error"):
            raise TaskError(task.data["task_error"])
        self.task = task
        self.turns = 0
        self.executed = []      # SQL statements run this episode (the expert replays the gold ones)
        self.last_rows = None   # the last statement's rows, None after an error
        self.db = self._open_database(task.data["table"])
        return [{"role": "user", "content": INSTRUCTIONS},
                {"role": "assistant", "content": "Ok."},
                {"role": "user", "content": task.prompt}]

    @classmethod
    def parse_action(cls, reply):
        """("operation", sql) or ("answer", text after "Final Answer:"), or None (invalid)."""
        action = ACTION_RE.search(reply)
        if action and action.group(1) == "Operation":   # exactly, as upstream
            sql = SQL_RE.search(reply)
            if not sql:
                return None
            return "operation", one_line(sql.group(1))
        answer = ANSWER_RE.search(reply)
        if answer:
            return "answer", answer.group(1)
        return None

    def step(self, reply):
        self.turns += 1
        parsed = self.parse_action(reply)
        # an operation is recorded with its SQL: 02's repetition rule and the error analysis compare them
        info = {"valid_format": parsed is not None, "valid_action": parsed is not None,
                "action": ("invalid" if parsed is None else "answer" if parsed[0] == "answer" else parsed[1])}
        try:
            if parsed is None:   # AgentBench scores it with an empty answer
                return self._finish("invalid_format", info, answer="")
            action, argument = parsed
            if action == "answer":
                return self._finish("answered", info, answer=argument)
            if self.turns > self.max_round:
                # upstream reads a final answer from the reply after the last operation, whatever
                # its action line says
                last = ANSWER_RE.search(reply)
                return self._finish("max_turns", info, answer=last.group(1) if last else "")
            self.executed.append(argument)
            try:
                self.last_rows = self.db.execute(argument)
                observation = render_rows(self.last_rows)
            except SQLError as e:
                self.last_rows = None
                observation = str(e)[:MAX_OBSERVATION_CHARS]
                info.update(valid_action=False, error=observation)
            return Step(observation=observation, info=info)
        except DatabaseFailure as e:
            self._close_database()
            return Step(observation="", done=True, finish="env_error", info={**info, "error": str(e)})

    def _finish(self, finish, info, answer=None):
        """End the episode: score it the AgentBench way and drop the database."""
        entry = self.task.data
        if entry["type"][0] in MODIFICATION_TYPES:
            rows = self.db.table_rows()
            gold_rows, gold_error = self.gold_table()
            if gold_error:
                info["gold_error"] = gold_error
            success = same_table(rows, gold_rows)
        else:
            success = answer is not None and score_answer(answer, entry["label"])
        if answer is not None:
            info["answer"] = answer.strip()
        self._close_database()
        return Step(observation="", done=True, reward=float(success), success=success, finish=finish, info=info)

    def gold_table(self):
        """(rows, error): the task table after the gold statement(s) on a fresh copy."""
        gold = self._open_database(self.task.data["table"])
        try:
            for statement in self.task.data["label"]:
                try:
                    gold.execute(one_line(statement))
                except SQLError as e:
                    return None, f"gold statement failed: {e}"
            return gold.table_rows(), None
        finally:
            gold.close()

    # -- the expert: the task's gold SQL through the real database ------------------------------

    def gold_statements(self):
        entry = self.task.data
        if entry["type"][0] in MODIFICATION_TYPES:
            return list(entry["label"])
        query = (entry.get("sql") or {}).get("query")
        return [query] if query else []

    def expert_reply(self):
        gold = self.gold_statements()
        table = self.task.data["table"]["table_name"]
        if len(self.executed) < len(gold):
            sql = one_line(gold[len(self.executed)])
            if self.task.data["type"][0] in MODIFICATION_TYPES:
                thought = f"The question asks me to change the table `{table}`, so I will run the statement that does it."
            else:
                thought = f"To answer the question I will query the table `{table}` for the values it asks about."
            return f"{thought}\nAction: Operation\n```sql\n{sql}\n```"
        if self.task.data["type"][0] in MODIFICATION_TYPES:
            done = "has been executed, so the table is updated as asked" if self.last_rows is not None \
                else "failed, so I could not change the table"
            return f'The statement {done}.\nAction: Answer\nFinal Answer: ["none"]'
        if self.last_rows is None:
            # no result to report (no gold query, or it failed): an honest non-answer
            return "I could not get a result from the database, so I cannot determine the answer.\nAction: Answer\nFinal Answer: []"
        # answer exactly what the query returned: every value of every row; no rows or NULL is
        # "none", the data's word for "no such value"
        values = ["none" if v is None else str(v) for row in self.last_rows for v in row] or ["none"]
        return (f"The query returned {render_rows(self.last_rows)}, so that is the answer.\n"
                f"Action: Answer\nFinal Answer: {json.dumps(values, ensure_ascii=False)}")

    def close(self):
        self._close_database()
