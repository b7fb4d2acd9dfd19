"""Task derivation without an LLM: DBBench tasks written from the collection split's own tables by
templates, the offline stand-in for AgentTuning's tasks derived from existing datasets.

    python 00_instruct.py --env=db --agent=template --n=400     # then 01_collect.py --tasks=...

Each candidate takes a dev table (drawn by the candidate's seed) and the task type the pipeline
drew for it, and writes one task in DBBench's format: a question with the SELECT that answers it
(other, counting, comparison, ranking, aggregation-SUM/MIN/MAX/AVG) or a request with the
statement that does it (INSERT, UPDATE, DELETE), in several wordings. The values come from the
table itself, so every question has an answer and every change changes something; the pipeline
then runs each task in the real env (the label comes from the query's rows), decontaminates it
against the test sets and drops duplicates, exactly as for an LLM teacher's tasks.

Why templates and not a teacher: offline there is no LLM that writes usable tasks (the 135M base
model does not), and a model that never saw DBBench's reply format fails on the first turn. The
tables are the 60 dev tables only: the std test set's tables are never read.
"""
import json
import random
import re
from collections import Counter

NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
NUMERIC_TYPES = ("INT", "INTEGER", "FLOAT", "DECIMAL", "REAL", "DOUBLE", "YEAR")
TRIES = 20          # tables tried for a task type before the candidate is given up

# wordings per task type; {table} {a} {v} {b} {w} {n} {x} are filled in below
WORDINGS = {
    "other": ["What is the {b} when the {a} is {v}?", "Which {b} has a {a} of {v}?",
              "Tell me the {b} of the entry whose {a} is {v}.", "What {b} is listed for {a} {v}?"],
    "counting": ["How many entries have a {a} of {v}?", "What is the number of rows where {a} is {v}?",
                 "Count the records with {a} equal to {v}.", "How many times does {v} appear as the {a}?"],
    "comparison": ["Which {b} have a {n} greater than {x}?", "List the {b} where the {n} is more than {x}.",
                   "Which {b} have a {n} smaller than {x}?", "Name the {b} with a {n} below {x}."],
    "ranking": ["Which {b} has the highest {n}?", "Name the {b} with the largest {n}.",
                "Which {b} has the lowest {n}?", "Name the {b} with the smallest {n}."],
    "aggregation-SUM": ["What is the total {n}?", "What is the sum of {n} when {a} is {v}?",
                        "Add up the {n} of the entries whose {a} is {v}."],
    "aggregation-AVG": ["What is the average {n}?", "What is the mean {n} when {a} is {v}?",
                        "What is the average {n} of the rows with {a} {v}?"],
    "aggregation-MAX": ["What is the highest {n}?", "What is the largest {n} when {a} is {v}?",
                        "Which {n} is the biggest one with a {a} of {v}?"],
    "aggregation-MIN": ["What is the lowest {n}?", "What is the smallest {n} when {a} is {v}?",
                        "Which {n} is the least one with a {a} of {v}?"],
    "INSERT": ["Insert a new record into the '{table}' table with {values}.",
               "Add a row to '{table}' with {values}.",
               "Put a new entry in the '{table}' table: {values}."],
    "UPDATE": ["Update the {b} to '{w}' in the '{table}' table where the {a} is '{v}'.",
               "Change the {b} of the entry whose {a} is '{v}' to '{w}' in '{table}'.",
               "In the '{table}' table, set {b} to '{w}' for the row with {a} '{v}'."],
    "DELETE": ["Delete the records from the '{table}' table where the {a} is '{v}'.",
               "Remove every entry whose {a} is '{v}' from '{table}'.",
               "In '{table}', delete the rows with {a} '{v}'."],
}


def name(column):
    return "`" + column + "`"


def literal(value):
    return "'" + str(value).replace("'", "''") + "'"


def number_expr(column, declared):
    """The column as a number on MySQL and SQLite alike (a TEXT column compares as text else)."""
    return name(column) if declared.upper() in NUMERIC_TYPES else f"{name(column)} + 0"


class Table:
    def __init__(self, record):
        table = record["table"]
        self.name = table["table_name"]
        self.columns = [str(c["name"]) for c in table["table_info"]["columns"]]
        self.types = [str(c.get("type", "TEXT")) for c in table["table_info"]["columns"]]
        self.rows = [[("" if v is None else str(v)) for v in row] for row in table["table_info"]["rows"]
                     if len(row) == len(self.columns)]
        self.record = record
        self.usable = [i for i, c in enumerate(self.columns) if c.strip() and "`" not in c]   # quotable names
        self.text = [i for i in self.usable if any(r[i].strip() for r in self.rows)]
        self.numeric = [i for i in self.usable if len({r[i] for r in self.rows}) > 1
                        and all(NUMBER_RE.fullmatch(r[i].strip()) for r in self.rows)]
        # per text column: the values that name one row (a WHERE that picks it out)
        self.unique = {i: [v for v, k in Counter(self.values(i)).items() if k == 1 and short(v)] for i in self.text}

    def values(self, i):
        return [r[i] for r in self.rows]

    def pick_value(self, i, rng):
        """One of the column's short values ('' when it has none)."""
        return rng.choice(sorted({v for v in self.values(i) if short(v)}) or [""])


def short(value):
    return bool(value.strip()) and len(value) <= 40


def derive(table, kind, rng):
    """One DBBench item of this type from the table, or None when the table cannot give one."""
    t, cols = table, table.columns
    where_cols = [i for i in t.text if t.unique[i]]
    wording = rng.choice(WORDINGS[kind])
    fill = {"table": t.name}
    item = {"type": [kind], "table": t.record["table"]}

    if kind in ("other", "UPDATE") and len(where_cols) >= 1 and len(t.text) >= 2:
        a = rng.choice(where_cols)
        b = rng.choice([i for i in t.text if i != a])
        v = rng.choice(t.unique[a])
        fill.update(a=cols[a], b=cols[b], v=v)
        where = f"WHERE {name(cols[a])} = {literal(v)}"
        if kind == "other":
            item["sql"] = {"query": f"SELECT {name(cols[b])} FROM {name(t.name)} {where}"}
        else:
            current = next(r[b] for r in t.rows if r[a] == v)
            others = [w for w in set(t.values(b)) if w != current and short(w)]
            if not others:
                return None
            fill["w"] = rng.choice(sorted(others))
            item["label"] = [f"UPDATE {name(t.name)} SET {name(cols[b])} = {literal(fill['w'])} {where}"]
    elif kind in ("counting", "DELETE") and t.text:
        a = rng.choice(t.text)
        v = t.pick_value(a, rng)
        if not v:
            return None
        fill.update(a=cols[a], v=v)
        where = f"WHERE {name(cols[a])} = {literal(v)}"
        if kind == "counting":
            item["sql"] = {"query": f"SELECT COUNT(*) FROM {name(t.name)} {where}"}
        else:
            item["label"] = [f"DELETE FROM {name(t.name)} {where}"]
    elif kind in ("comparison", "ranking") and t.numeric and len(t.text) >= 2:
        n = rng.choice(t.numeric)
        b = rng.choice([i for i in t.text if i != n])
        number = number_expr(cols[n], t.types[n])
        fill.update(n=cols[n], b=cols[b])
        ordered = sorted({float(x) for x in t.values(n)})
        lowest = "lowest" in wording or "smallest" in wording or "smaller" in wording or "below" in wording
        if kind == "comparison":   # a threshold that leaves one to four rows
            k = rng.randint(1, min(4, len(ordered) - 1))
            x = ordered[k] if lowest else ordered[-k - 1]
            fill["x"] = f"{x:g}"
            item["sql"] = {"query": f"SELECT {name(cols[b])} FROM {name(t.name)} WHERE {number} "
                                    f"{'<' if lowest else '>'} {x:g}"}
        else:
            top = ordered[0] if lowest else ordered[-1]
            if sum(float(x) == top for x in t.values(n)) != 1:
                return None        # a tie has no one answer
            item["sql"] = {"query": f"SELECT {name(cols[b])} FROM {name(t.name)} ORDER BY {number} "
                                    f"{'ASC' if lowest else 'DESC'} LIMIT 1"}
    elif kind.startswith("aggregation-") and t.numeric:
        n = rng.choice(t.numeric)
        fill["n"] = cols[n]
        function = kind.split("-")[1]
        query = f"SELECT {function}({number_expr(cols[n], t.types[n])}) FROM {name(t.name)}"
        if "{a}" in wording:
            candidates = [i for i in t.text if i != n]
            if not candidates:
                return None
            a = rng.choice(candidates)
            v = t.pick_value(a, rng)
            if not v:
                return None
            fill.update(a=cols[a], v=v)
            query += f" WHERE {name(cols[a])} = {literal(v)}"
        item["sql"] = {"query": query}
    elif kind == "INSERT" and t.rows:
        row = [rng.choice(t.values(i)) for i in range(len(cols))]   # each value seen in its column
        if row in t.rows or len(t.usable) < len(cols):
            return None
        fill["values"] = ", ".join(f"{c} '{v}'" for c, v in zip(cols, row))
        item["label"] = [f"INSERT INTO {name(t.name)} ({', '.join(name(c) for c in cols)}) "
                         f"VALUES ({', '.join(literal(v) for v in row)})"]
    else:
        return None
    item["description"] = wording.format(**fill)
    return item


class TemplateTeacher:
    """The 'teacher' of 00_instruct.py --agent=template: writes each DB candidate's task from a dev
    table (no LLM call). The candidate's reply is the task as a ```json block, read like any reply."""
    kind = "template"

    def __init__(self, records, seed=0):
        self.tables = [Table(r) for r in records]
        self.seed = seed

    def write(self, candidate):
        if candidate.env != "db":
            raise ValueError("the template teacher writes DB tasks only")
        rng = random.Random(f"{self.seed}:template:{candidate.index}")
        for table in rng.sample(self.tables, min(TRIES, len(self.tables))):
            item = derive(table, candidate.kind, rng)
            if item is not None:
                # the provenance names the source table instead of the LLM prompt's topic and difficulty
                candidate.topic, candidate.difficulty = f"dev table {table.name}", "template"
                return "```json\n" + json.dumps(item, ensure_ascii=False) + "\n```"
        raise ValueError(f"none of {min(TRIES, len(self.tables))} dev tables gives a {candidate.kind} task")

    def describe(self):
        return {"kind": self.kind, "model": "templates over the dev tables", "seed": self.seed}

    def close(self):
        pass
