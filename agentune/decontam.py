"""Word n-gram overlap with the evaluation tasks: what 02_filter.py decontaminates trajectories
with and 00_instruct.py decontaminates (and deduplicates) generated tasks with.

    index = EvalIndex(load_eval_tasks("os:std") + load_eval_tasks("db:std"), n=13)
    share, i = index.best_match(text)   # share of eval task i's 13-grams that occur in text
"""
import json
import re
from collections import Counter, defaultdict

from agentune.envs import ENVS, env_class
from agentune.records import DataError, expand_paths, read_jsonl

TASK_TEXT_FIELDS = ("prompt", "question", "description", "instruction", "task", "query", "text")


def words(text):
    return re.findall(r"\w+", text.lower())


def ngrams(tokens, n):
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def read_task_file(path):
    if path.endswith(".json"):  # a pretty-printed list or object (AgentBench OS task files)
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{e.lineno}", f"invalid JSON ({e.msg})") from None
        items = data if isinstance(data, list) else [data]
        return [(f"{path}[{i}]", item) for i, item in enumerate(items)]
    return list(read_jsonl(path))


def load_env(env):
    try:
        return env_class(env)
    except ImportError as e:
        raise SystemExit(f"the {env} environment cannot be loaded ({e}): it is needed to read {env} "
                         f"tasks and to check the format of {env} trajectories") from None


def load_eval_tasks(spec):
    """(name, text) of every evaluation task of one eval_tasks entry: an env name with an optional
    split ("os:std": that env's load_tasks; a bare name: its default tasks) or a task file or glob
    (JSON/JSONL with a prompt/question/description/instruction field)."""
    env_split = re.fullmatch(r"([a-z0-9_]+)(?::(.+))?", spec)
    if env_split and env_split.group(1) in ENVS:
        env, split = env_split.groups()
        tasks = [(f"{env}/{task.id}", task.prompt) for task in load_env(env).load_tasks(split=split)]
    else:
        tasks = []
        for path in expand_paths([spec]):
            for where, item in read_task_file(path):
                field = next((k for k in TASK_TEXT_FIELDS if isinstance(item, dict) and item.get(k)), None)
                if field is None:
                    raise DataError(where, "eval task without a task text",
                                    f"give it one of the fields {', '.join(TASK_TEXT_FIELDS)}")
                tasks.append((where, item[field]))
    if not tasks:
        raise SystemExit(f"--eval_tasks: {spec!r} gives no tasks; check the split name or the files")
    return tasks


def eval_index(specs, n):
    """(EvalIndex of the tasks of every eval_tasks entry, {entry: how many tasks})."""
    tasks, counts = [], {}
    for spec in specs:
        found = load_eval_tasks(spec)
        tasks += found
        counts[spec] = len(found)
    return EvalIndex(tasks, n), counts


class EvalIndex:
    """The n-grams of the eval tasks. An eval task shorter than n words is one n-gram of its own
    length, so a short task copied verbatim is caught too. add() puts one more task in (00 indexes
    the tasks it keeps, to find near-duplicates of them)."""

    def __init__(self, tasks, n):
        self.n = n
        self.tasks = []
        self.index = defaultdict(lambda: defaultdict(list))   # size -> n-gram -> task numbers
        self.sizes = []
        for name, text in tasks:
            self.add(name, text)

    def add(self, name, text):
        i = len(self.tasks)
        self.tasks.append((name, text))
        tokens = words(text)
        size = min(self.n, len(tokens))
        grams = ngrams(tokens, size) if size else set()
        self.sizes.append(len(grams))
        for gram in grams:
            self.index[size][gram].append(i)

    def best_match(self, text):
        """(share of the eval task's n-grams found in text, eval task number) of the closest task."""
        tokens = words(text)
        hits = Counter()
        for size, grams in self.index.items():
            for gram in ngrams(tokens, size):
                hits.update(grams.get(gram, ()))
        if not hits:
            return 0.0, None
        return max((count / self.sizes[i], i) for i, count in hits.items())
