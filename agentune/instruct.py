"""Instruction construction, AgentTuning's first step (self-instruct): a teacher LLM proposes OS
and DB tasks in the environments' own task formats, with their solutions, and only the tasks that
check out in the real environments are kept. 00_instruct.py runs it; 01_collect.py --tasks=...
collects trajectories on what it keeps.

Each candidate is one teacher call. Its prompt asks for one task of the env's format with a topic,
a difficulty (and for DB a task type) drawn from a generator seeded with (seed, env, candidate
number), and shows dev tasks of the env as examples. A candidate is rejected at the first step it
fails, in this order:

    llm_error           the teacher call failed
    no_table            (--agent=template) no dev table gives a task of the type drawn
    malformed           the reply holds no JSON object
    bad_format          not a task of the env's format (AgentBench OS task / DBBench record), or
                        one the env cannot run (an OS script given as a host file, no example)
    contaminated        >= decontam_overlap of an evaluation task's 13-grams are in the task text
                        (the rule and index of 02_filter.py, agentune/decontam.py)
  OS, on fresh sandboxes (init scripts are untrusted code: they only ever run inside one):
    init_failed         an init script exits non-zero or runs past its timeout on a fresh machine
    example_fails       the expert (the example solution, replayed as 01 replays it) is judged wrong
    check_passes_wrong  on a fresh machine where the task is not done, a wrong answer (none,
                        "agentune-wrong-answer", the expert's integer answer + 1) is judged right
  DB, on fresh databases of the env's backend:
    table_error         the table cannot be loaded (a row of the wrong length, duplicate columns,
                        rejected by the server)
    sql_error           the gold SQL fails
    empty_answer        the gold query returns no rows or only NULLs
    no_change           the gold modification leaves the table as it was
    label_mismatch      the teacher's answer is not what its own query returns (scored as AgentBench)
    example_fails       the expert episode (the gold SQL through DBEnv, as 01 runs it) is judged wrong
  duplicate             the same description (as words, any case) as a dev task or a kept candidate
  near_duplicate        >= dedup_overlap of a dev or kept task's dedup_n-grams are in the description

A query task's label (its answer values) is what the expert answers from the gold query's rows in
the env, the way DBEnv.expert_reply reads them. Kept tasks carry their provenance (teacher,
prompt version, seed, candidate number, topic, difficulty).
"""
import json
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from string import Template

from tqdm import tqdm

from agentune.agents import ExpertAgent
from agentune.decontam import EvalIndex, words
from agentune.derive import TemplateTeacher
from agentune.envs.base import Task
from agentune.records import DataError

PROMPT_VERSION = "instruct-v1"
REASONS = ["llm_error", "no_table", "malformed", "bad_format", "contaminated", "init_failed", "example_fails",
           "check_passes_wrong", "table_error", "sql_error", "empty_answer", "no_change",
           "label_mismatch", "env_error", "duplicate", "near_duplicate"]
DIFFICULTIES = ("easy", "medium", "hard")
OS_TOPICS = (
    "counting files or directories", "file contents and text search (grep)", "text processing (sed, awk, cut, sort, uniq)",
    "file permissions and ownership", "users and groups", "processes and background programs",
    "disk usage and file sizes", "archives and compression (tar, gzip)", "finding files by name, size or time (find)",
    "symbolic and hard links", "environment variables and shell configuration", "log file analysis",
    "creating and editing files", "system information (CPU, memory, kernel, hostname)", "shell scripts and executables",
    "CSV or JSON data files", "timestamps and dates", "hidden files and directory trees",
)
DB_TOPICS = (
    "sports results", "film releases", "employees and salaries", "library books", "countries and cities",
    "university courses", "product sales", "weather records", "music charts", "election results",
    "restaurants and ratings", "flight schedules", "hospital patients", "school exam scores",
    "car models", "video games", "museum exhibits", "football transfers", "TV episodes", "mountains and rivers",
)
QUERY_TYPES = ("other", "counting", "comparison", "ranking", "aggregation-SUM", "aggregation-MIN",
               "aggregation-MAX", "aggregation-AVG")
MODIFICATION_TYPES = ("INSERT", "UPDATE", "DELETE")
DB_TYPES = QUERY_TYPES + MODIFICATION_TYPES
WRONG_ANSWER = "agentune-wrong-answer"
EXAMPLE_ROWS = 6    # rows of a dev table shown in a DB prompt example

OS_PROMPT = Template("""You write practice tasks for an AI agent that operates a Linux machine through a bash shell (Debian, logged in as root, python3 installed, no network). Write one new task as a JSON object in AgentBench's OS task format:

{
  "description": "what the user asks, as the agent will read it",
  "create": {"init": [{"language": "bash", "code": "commands that set up the machine before the task"}]},
  "start": "optional: a command run in the agent's shell first, e.g. a background program ending in &",
  "evaluation": {
    "example": {"language": "bash", "code": "a bash solution; for a question it prints only the answer"},
    "match": "the exact answer"
  }
}

Instead of "match", "evaluation" may have "check", a list of scripts: [null, {"language": "python", "code": "..."}] compares the agent's answer (sys.argv[1]) with what the example prints on a fresh machine (sys.argv[2]) and exits 0 when the answer is right. For a task that changes the machine, [{"language": "bash", "code": "..."}] checks the machine's state (exit 0 = done) and the example makes the change. Leave out "create" or "start" when the task needs none.

Rules: the task is solvable with shell commands on this machine alone; what the answer depends on is created by init (files, users, processes), so it is the same on every fresh machine; a wrong answer, or a machine where nothing was done, must fail the check.

Topic: $topic. Difficulty: $difficulty.

Tasks in this format (write a new, different one):
$examples

Reply with the new task as one JSON object in a ```json block.""")

DB_PROMPT = Template("""You write practice tasks for an AI agent that answers questions about, and makes changes to, a MySQL database table with SQL. Write one new task as a JSON object in DBBench's format:

{
  "description": "the question or request, as the agent will read it",
  "type": ["one of: other, counting, comparison, ranking, aggregation-SUM, aggregation-MIN, aggregation-MAX, aggregation-AVG, INSERT, UPDATE, DELETE"],
  "table": {"table_name": "...", "table_info": {"columns": [{"name": "...", "type": "TEXT"}], "rows": [["...", "..."]]}},
  "sql": {"query": "for a question: the one SELECT that answers it"},
  "label": ["for a question: the answer values; for INSERT/UPDATE/DELETE: the one statement that does it"]
}

Give the table 5 to 15 rows of realistic values, every value a string. Quote table and column names with backticks; the SQL must run on both MySQL and SQLite. A question must have a non-empty answer; an INSERT, UPDATE or DELETE must change the table. A request leaves out "sql".

This task: type $kind, topic $topic, difficulty $difficulty.

Tasks in this format (tables cut to their first rows; write a new, different one):
$examples

Reply with the new task as one JSON object in a ```json block.""")


@dataclass
class Candidate:
    env: str
    index: int
    topic: str
    difficulty: str
    kind: str                     # db: the task type asked for; os: ""
    messages: list
    reply: str = ""
    item: dict | None = None      # the parsed JSON object of the reply
    task: Task | None = None
    reason: str | None = None     # the first failed step (REASONS), None while it passes
    detail: str = ""
    info: dict = field(default_factory=dict)

    def reject(self, reason, detail):
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------------------------------------
# tasks <-> JSON in the envs' own formats

def script_json(script):
    return None if script is None else {"language": script[0], "code": script[1]}


def os_task_json(spec):
    """A parsed OS task (parse_task's dict) as AgentBench task JSON, every script inline."""
    item = {"description": spec["description"]}
    if spec["init"]:
        item["create"] = {"local": "default", "init": [script_json(s) for s in spec["init"]]}
    if spec["start"]:
        item["start"] = spec["start"][1]
    evaluation = ({"match": spec["match"]} if spec["match"] is not None
                  else {"check": [script_json(s) for s in spec["check"]]})
    if spec["example"] is not None:
        evaluation["example"] = script_json(spec["example"])
    item["evaluation"] = evaluation
    return item


def db_example_json(record):
    """A DBBench record as the teacher is shown it: its fields in the generated format, rows cut."""
    table = record["table"]
    item = {"description": record["description"], "type": record["type"],
            "table": {"table_name": table["table_name"],
                      "table_info": {"columns": table["table_info"]["columns"],
                                     "rows": table["table_info"]["rows"][:EXAMPLE_ROWS]}}}
    if record["type"][0] not in MODIFICATION_TYPES:
        item["sql"] = {"query": (record.get("sql") or {}).get("query", "")}
    item["label"] = record["label"]
    return item


def examples(env):
    """The dev tasks shown as examples: (type, JSON, id) (OS: the ones with an example solution)."""
    from agentune.envs import env_class
    tasks = env_class(env).load_tasks(split="dev")
    if env == "os":
        return [("", os_task_json(t.data), t.id) for t in tasks if t.data["example"] is not None]
    return [(t.data["type"][0], db_example_json(t.data), t.id) for t in tasks if not t.data.get("task_error")]


def make_candidate(env, index, seed, shots, n_shots):
    rng = random.Random(f"{seed}:{env}:{index}")
    topic = rng.choice(OS_TOPICS if env == "os" else DB_TOPICS)
    difficulty = rng.choice(DIFFICULTIES)
    kind = rng.choice(DB_TYPES) if env == "db" else ""
    # db: examples of the asked type, then of its group (queries / modifications; dev has no DELETE)
    group = MODIFICATION_TYPES if kind in MODIFICATION_TYPES else QUERY_TYPES
    same = [s for s in shots if s[0] == kind]
    chosen = rng.sample(same, min(n_shots, len(same)))
    rest = [s for s in shots if s[0] != kind and (not kind or s[0] in group)]
    chosen += rng.sample(rest, min(n_shots - len(chosen), len(rest)))
    rendered = "\n".join("```json\n" + json.dumps(item, ensure_ascii=False, indent=1) + "\n```" for _, item, _ in chosen)
    prompt = (OS_PROMPT if env == "os" else DB_PROMPT).substitute(
        topic=topic, difficulty=difficulty, kind=kind, examples=rendered)
    return Candidate(env, index, topic, difficulty, kind, [{"role": "user", "content": prompt}])


def parse_reply(text):
    """The JSON object in a teacher reply: its ```json block, else from the first { to the last }."""
    block = re.search(r"```(?:json)?[ \t]*\n(.*?)```", text, re.DOTALL)
    body = block.group(1) if block else text[text.find("{"):text.rfind("}") + 1]
    try:
        item = json.loads(body)
    except json.JSONDecodeError as e:
        raise ValueError(f"no JSON object in the reply ({e.msg}, line {e.lineno} column {e.colno})") from None
    if not isinstance(item, dict):
        raise ValueError(f"the reply's JSON is a {type(item).__name__}, not one task object")
    return item


def _has_file_script(obj):
    if isinstance(obj, dict):
        return "file" in obj or any(_has_file_script(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_file_script(v) for v in obj)
    return False


def os_task(item, task_id):
    """A teacher's OS task -> Task, or ValueError saying what is wrong with it."""
    from agentune.envs.os_env import parse_task
    if not isinstance(item.get("description"), str) or not item["description"].strip():
        raise ValueError("no description")
    if _has_file_script(item):   # parse_task would read that path on this machine
        raise ValueError("a script given as 'file': generated tasks must give their scripts as inline 'code'")
    try:
        spec = parse_task(item, "/nonexistent", task_id)
    except DataError as e:
        raise ValueError(e.message) from None
    scripts = [*spec["init"], spec["start"], *(spec["check"] or []), spec["example"]]
    if any(s is not None and not isinstance(s[1], str) for s in scripts):
        raise ValueError("a script's code is not a string")
    match = spec["match"]
    if match is not None and not (isinstance(match, dict) and isinstance(match.get("answer", match.get("regex")), str)):
        raise ValueError(f"evaluation.match must be the answer string, got {json.dumps(match)[:100]}")
    if spec["example"] is None:
        raise ValueError("no example solution (evaluation.example)")
    if spec["example"][0] != "bash":
        raise ValueError("the example solution must be bash: the expert runs it in the agent's shell")
    return Task(id=task_id, prompt=spec["description"], data=spec)


def db_task(item, task_id):
    """A teacher's DBBench record -> (Task, the teacher's answer for a query or None); the record
    gets AgentBench's add_description and heads; a query's label is filled in by validate_db."""
    from agentune.envs.db_env import DBEnv
    kind = item.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind not in DB_TYPES:
        raise ValueError(f"type {json.dumps(item.get('type'))[:60]} is not one of {', '.join(DB_TYPES)}")
    if not isinstance(item.get("description"), str) or not item["description"].strip():
        raise ValueError("no description")
    try:
        table = item["table"]
        name, columns = table["table_name"], [str(c["name"]) for c in table["table_info"]["columns"]]
    except (KeyError, TypeError):
        raise ValueError("no table {table_name, table_info: {columns: [{name, type}], rows}}") from None
    record = {"description": item["description"], "label": item.get("label"), "table": table, "type": [kind],
              "heads": columns,
              "add_description": f"The name of this table is {name}, and the headers of this table are {','.join(columns)}."}
    claimed = None
    if kind in MODIFICATION_TYPES:
        if not (isinstance(record["label"], list) and record["label"]
                and all(isinstance(s, str) and s.strip() for s in record["label"])):
            raise ValueError(f"a {kind} task needs 'label': [the statement that does it]")
    else:
        query = (item.get("sql") or {}).get("query") if isinstance(item.get("sql"), dict) else None
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"a {kind} question needs 'sql': {{'query': the SELECT that answers it}}")
        record["sql"] = {"query": query}
        claimed = record["label"] if isinstance(record["label"], list) else None
        record["label"] = []   # the answer comes from running the query (validate_db)
    try:
        return DBEnv._task(task_id, task_id, record), claimed
    except DataError as e:
        raise ValueError(e.message) from None


# ---------------------------------------------------------------------------------------------
# validation in the real environments

def expert_episode(env, task):
    from agentune.rollout import run_episode
    return run_episode(env, ExpertAgent(), task, env.max_turns)


def episode_outcome(record):
    last = record["messages"][-1]["content"] if record["messages"] else ""
    error = f", {record['error'].splitlines()[0]}" if record.get("error") else ""
    return f"finish={record['finish']}{error}, last reply {last[-200:]!r}"


def wrong_answers(answer):
    """Answers a check must reject on a machine where the task is not done."""
    wrong = [None, WRONG_ANSWER]
    if answer is not None and re.fullmatch(r"-?\d+", answer.strip()):
        wrong.append(str(int(answer) + 1))
    return [w for w in wrong if w != answer]


def validate_os(task, env_kwargs, init_timeout=60):
    """None when the task checks out, else (reason, detail)."""
    from agentune.envs.os_env import OSEnv, script_argv
    from agentune.sandbox import TIMEOUT, DockerSandbox, Sandbox
    env = OSEnv(**env_kwargs)
    try:
        # 1. init on a fresh machine, exit codes checked (OSEnv.reset ignores them, as AgentBench)
        box = DockerSandbox(env.docker_image) if env.backend == "docker" else Sandbox()
        with box:
            for n, script in enumerate(task.data["init"]):
                output, code = box.exec(script_argv(script, []), timeout=init_timeout)
                if code != 0:
                    what = "ran past its timeout" if code == TIMEOUT else f"exited {code}"
                    return "init_failed", f"init script {n + 1} {what}: {output.strip()[-300:]!r}"
        # 2. the expert replays the example solution, judged by the task's own match/check
        record = expert_episode(env, task)
        if not record["success"]:
            match = task.data["match"] or {}
            expects = f"; the task expects {match['answer']!r}" if "answer" in match else ""
            return "example_fails", episode_outcome(record) + expects
        action = OSEnv.parse_action(record["messages"][-1]["content"])
        answer = action[1] if action and action[0] == "answer" else None
        # 3. a fresh machine after init and start, nothing done: wrong answers must fail
        env.reset(task)
        for wrong in wrong_answers(answer):
            if env.judge(wrong):
                return "check_passes_wrong", (f"the answer {wrong!r} is judged right on a fresh machine where "
                                              f"the task is not done (the example's answer: {answer!r})")
        return None
    finally:
        env.close()


def validate_db(task, claimed, env_kwargs):
    """None when the task checks out (a query's label is then set), else (reason, detail)."""
    from agentune.envs.db_env import DatabaseFailure, DBEnv, SQLError, one_line, same_table, score_answer
    data = task.data
    if data.get("task_error"):
        return "table_error", data["task_error"]
    modification = data["type"][0] in MODIFICATION_TYPES
    env = DBEnv(**env_kwargs)
    env.task = task
    try:
        try:
            db = env._open_database(data["table"])
        except DatabaseFailure as e:
            return "table_error", str(e)
        try:
            before, rows = db.table_rows(), None
            for statement in env.gold_statements():
                try:
                    rows = db.execute(one_line(statement))
                except SQLError as e:
                    return "sql_error", f"{one_line(statement)[:200]!r}: {e}"
            if modification and same_table(before, db.table_rows()):
                return "no_change", f"{one_line(data['label'][0])[:200]!r} leaves the table as it was"
            if not modification and not any(v is not None for row in rows for v in row):
                return "empty_answer", f"{one_line(data['sql']['query'])[:200]!r} returns {rows[:3]!r}"
        finally:
            db.close()
        if not modification:   # the label: what the expert answers from the gold query's rows
            action = DBEnv.parse_action(expert_episode(env, task)["messages"][-1]["content"])
            data["label"] = json.loads(action[1])
            if claimed is not None and not score_answer(json.dumps(claimed, ensure_ascii=False), data["label"]):
                return "label_mismatch", f"the teacher's answer {claimed!r}, the query's {data['label']!r}"
        record = expert_episode(env, task)
        if not record["success"]:
            return "example_fails", episode_outcome(record)
        return None
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------
# the pipeline

def propose(agent, candidate):
    if isinstance(agent, TemplateTeacher):   # task derivation from the dev tables: no LLM call
        try:
            candidate.reply = agent.write(candidate)
        except ValueError as e:
            candidate.reject("no_table", str(e))
        return
    agent.start_episode()   # each candidate is a fresh conversation with its own call budget
    try:
        candidate.reply = agent.reply(candidate.messages).content
    except Exception as e:   # LLMError, ContextLimit, a failing local model
        candidate.reject("llm_error", f"{type(e).__name__}: {e}")


def read(candidate):
    try:
        candidate.item = parse_reply(candidate.reply)
    except ValueError as e:
        return candidate.reject("malformed", str(e))
    task_id = f"{candidate.env}-candidate-{candidate.index}"
    try:
        if candidate.env == "os":
            candidate.task = os_task(candidate.item, task_id)
        else:
            candidate.task, candidate.info["claimed"] = db_task(candidate.item, task_id)
    except ValueError as e:
        candidate.reject("bad_format", str(e))


def validate(candidate, env_kwargs):
    try:
        if candidate.env == "os":
            failure = validate_os(candidate.task, env_kwargs)
        else:
            failure = validate_db(candidate.task, candidate.info["claimed"], env_kwargs)
    except Exception as e:   # the env broke on it (a sandbox that died, a server that went away)
        failure = "env_error", f"{type(e).__name__}: {e}"
    if failure:
        candidate.reject(*failure)


def construct(env, agent, n, seed, eval_index, decontam_overlap=0.5, dedup_n=8, dedup_overlap=0.5,
              n_shots=2, workers=4, env_kwargs=None):
    """Propose n candidate tasks for env with the agent and screen them -> the candidates, kept
    ones with reason None, in candidate order (the outcome does not depend on `workers`)."""
    shots = examples(env)
    candidates = [make_candidate(env, i, seed, shots, n_shots) for i in range(n)]
    with ThreadPoolExecutor(workers) as pool:
        list(tqdm(pool.map(lambda c: propose(agent, c), candidates), total=n, desc=f"{env}: propose"))
    for c in candidates:
        if c.reason is None:
            read(c)
        if c.reason is None:
            share, i = eval_index.best_match(c.task.prompt)
            if i is not None and share >= decontam_overlap:
                name, text = eval_index.tasks[i]
                c.reject("contaminated", f"{share:.0%} of the {eval_index.n}-grams of eval task {name} ({text[:100]!r})")
    todo = [c for c in candidates if c.reason is None]
    with ThreadPoolExecutor(workers) as pool:
        list(tqdm(pool.map(lambda c: validate(c, env_kwargs or {}), todo), total=len(todo), desc=f"{env}: validate"))
    # deduplication against the dev tasks and the candidates kept before, in candidate order
    seen = EvalIndex([], dedup_n)
    exact = {}
    for _, item, task_id in shots:
        seen.add(f"dev task {task_id}", item["description"])
        exact.setdefault(" ".join(words(item["description"])), f"dev task {task_id}")
    for c in candidates:
        if c.reason is not None:
            continue
        description, name = c.task.data["description"], f"candidate {c.index}"
        key = " ".join(words(description))
        share, i = seen.best_match(description)
        if key in exact:
            c.reject("duplicate", f"the same description as {exact[key]}")
        elif i is not None and share >= dedup_overlap:
            c.reject("near_duplicate", f"{share:.0%} of the {dedup_n}-grams of {seen.tasks[i][0]} ({seen.tasks[i][1][:100]!r})")
        else:
            exact[key] = name
            seen.add(name, description)
    return candidates


def task_record(candidate, provenance):
    """A kept candidate in its env's task format, with its provenance."""
    provenance = {**provenance, "candidate": candidate.index, "topic": candidate.topic,
                  "difficulty": candidate.difficulty}
    if candidate.env == "os":
        return {**os_task_json(candidate.task.data), "labels": [candidate.topic], "provenance": provenance}
    return {**candidate.task.data, "provenance": provenance}
