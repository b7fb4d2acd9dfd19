"""AgentBench OS interaction: answer questions about / make changes to a Linux machine via bash.

Each episode gets a fresh disposable machine (agentune/sandbox.py: an overlay of the Debian rootfs
in its own namespaces, root inside, no network). The task's init scripts run first (as
independent processes, like AgentBench's `docker exec`; their failures are ignored as there), then
its `start` command in the agent's shell (background programs, shell variables, cd). The agent
sees AgentBench's instructions and one-shot example and replies with a thought and one action:

    Think: ...                  Think: ...                  Think: ...
    Act: bash                   Act: answer(42)             Act: finish
    ```bash
    ls -1 /etc | wc -l
    ```

A bash action runs in the persistent shell (state carries over, a command is interrupted after
`command_timeout` s) and the observation is its output cut to 800 characters, as AgentBench.
At most 8 replies (AgentBench's round limit). Scoring, as AgentBench:
- match: the stripped answer must equal the expected string;
- check: a list of scripts run as `script ANSWER PREV_OUTPUTS...` (exit 0 = pass), each getting
  the outputs of the ones before; a null first entry is the task's `example`, whose output is the
  expected value. We run that example in a throwaway copy-on-write copy of the machine right
  after init (before `start`; no shared task has both), so what the agent does cannot change the
  expected value (AgentBench runs it in the agent's container after the episode). Checkers (check/integer-match.py, ... or inline
  bash) run inside the machine with python3/bash, exactly as AgentBench runs them.

Task ids: "<data file relative to data/>#<index>", e.g. "dev.json#3", "4/Q30.json#2".
"""
import glob
import json
import os
import re

from agentune.envs.base import Env, NoReference, Step, Task
from agentune.paths import data_path
from agentune.records import DataError
from agentune.sandbox import DockerSandbox, Sandbox

# AgentBench.old's instructions (src/tasks/os_interaction/task.py), verbatim: the "\n\n" at the
# end are real newlines there (the later AgentBench server source and AgentInstruct's data have
# a literal backslash-n pair instead).
INSTRUCTIONS = """You are an assistant that will act like a person, I'will play the role of linux(ubuntu) operating system. Your goal is to implement the operations required by me or answer to the question proposed by me. For each of your turn, you should first think what you should do, and then take exact one of the three actions: "bash", "finish" or "answer". 

1. If you think you should execute some bash code, take bash action, and you should print like this:

Think: put your thought here.

Act: bash

```bash
# put your bash code here
```

2. If you think you have finished the task, take finish action, and you should print like this:

Think: put your thought here.

Act: finish

3. If you think you have got the answer to the question, take answer action, and you should print like this:

Think: put your thought here.

Act: answer(Your answer to the question should be put in this pair of parentheses)

If the output is too long, I will truncate it. The truncated output is not complete. You have to deal with the truncating problem by yourself. Attention, your bash code should not contain any input operation. Once again, you should take only exact one of the three actions in each turn.\n\n"""

ONE_SHOT = [
    {"role": "user", "content": 'tell me how many files are in the directory "/etc"?'},
    {"role": "assistant", "content": "Think: To count the files in /etc, I need to print all the files in it.\n\nAct: bash\n\n```bash\nls /etc\n```"},
    {"role": "user", "content": "The output of the OS:\ncpi cron.hourly fuse.conf iproute2 lvm networkd-dispatcher protocols selinux tmpfiles.d [truncated because the output is too long]"},
    {"role": "assistant", "content": "Think: The output has been truncated because it is too long, so I need to count files by script directly.\n\nAct: bash\n\n```bash\nls -1 /etc | wc -l\n```"},
    {"role": "user", "content": "The output of the OS:\n220"},
    {"role": "assistant", "content": "Think: Now I get the answer, it is 220.\n\nAct: answer(220)"},
]
MAX_OUTPUT = 800   # AgentBench: longer outputs are cut to 780 characters plus a note
LANGUAGES = ("bash", "python")


def truncate(output):
    if len(output) > MAX_OUTPUT:
        return output[:780] + "\n[truncated because the output is too long]"
    return output


class OSEnv(Env):
    name = "os"
    max_turns = 8
    max_reply_tokens = 128    # AgentBench's generation limit per reply
    test_split = "std"
    concurrency = "threads"   # the work happens in the sandbox's processes

    def __init__(self, command_timeout=30, backend="namespaces", docker_image="local-os/default"):
        """command_timeout: seconds before a bash action is interrupted (Ctrl-C). backend:
        "namespaces" (agentune.sandbox.Sandbox, root + the debootstrapped rootfs) or "docker"
        (DockerSandbox on docker_image, e.g. AgentBench's image built from res/dockerfiles)."""
        if backend not in ("namespaces", "docker"):
            raise SystemExit(f"os env: unknown backend {backend!r}; use namespaces or docker")
        ok, why = (DockerSandbox if backend == "docker" else Sandbox).available()
        if not ok:
            raise SystemExit(f"os env: {why}")
        self.command_timeout, self.backend, self.docker_image = command_timeout, backend, docker_image
        self.box = None
        self.task = None

    # ---- tasks

    # AgentBench's OS std test set (configs/tasks/os_interaction/std.yaml): every task file of
    # data/1..7 with its scripts/N. data/6-backup.json repeats data/6 (test data too); dev.json is
    # what collection uses, less the one task whose description is also in std
    STD_SETS = ("1", "2", "3", "4", "5", "6", "7")

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """Tasks from AgentBench OS data. `path`: the os_interaction dir (default: the public
        data), its data/ dir, or one task .json file; with a path and no split, every task in it.
        `split`: "std" (the std test set: data/1..7, what 05_eval.py evaluates on), "dev"
        (dev.json less the task shared with std: what 01_collect.py collects from; the default
        for the public data), or one data file or folder of data/ ("1", "4/Q30")."""
        if split in ("collect", "eval"):
            raise SystemExit(f"os: split {split!r} is gone: collect from 'dev', evaluate on 'std'")
        if split == "std":
            return [t for key in cls.STD_SETS for t in cls.load_tasks(path, key)]
        if split == "dev" or (split is None and path is None):
            std = {t.prompt for t in cls.load_tasks(path, "std")}
            return [t for t in cls.load_tasks(path, "dev.json") if t.prompt not in std]
        path = path or data_path("agentbench", "os_interaction")
        if os.path.isfile(path):   # ids stay relative to its data/ dir, as when loading the dir
            files = [os.path.abspath(path)]
            data_dir = os.path.dirname(files[0])
            while os.path.basename(data_dir) != "data" and data_dir != "/":
                data_dir = os.path.dirname(data_dir)
            if data_dir == "/":
                data_dir = os.path.dirname(files[0])
        else:
            data_dir = os.path.join(path, "data") if os.path.isdir(os.path.join(path, "data")) else path
            files = sorted(glob.glob(os.path.join(data_dir, "**", "*.json"), recursive=True))
        if not files:
            raise DataError(path, "no AgentBench OS task files (*.json) here",
                            "point --tasks at agentbench/os_interaction, its data/ dir or a .json file")
        scripts_root = os.path.join(os.path.dirname(data_dir), "scripts")
        tasks = []
        for file in files:
            rel = os.path.relpath(file, data_dir)
            key = rel.split("/")[0].removesuffix(".json")      # data/4/x.json -> scripts/4
            if split and not (rel.removesuffix(".json") == split.removesuffix(".json") or rel.startswith(split + "/")):
                continue
            with open(file, encoding="utf-8") as f:
                try:
                    items = json.load(f)
                except json.JSONDecodeError as e:
                    raise DataError(f"{file}:{e.lineno}", f"invalid JSON: {e.msg}", "fix the task file") from None
            for index, item in enumerate(items if isinstance(items, list) else [items]):
                spec = parse_task(item, os.path.join(scripts_root, key), f"{file}[{index}]")
                tasks.append(Task(id=f"{rel}#{index}", prompt=spec["description"], data=spec))
        return tasks

    # ---- episode

    def reset(self, task):
        self.close()
        self.task, self.spec = task, task.data
        self.expert_turn, self.last_output, self.expected = 0, "", None
        self.box = (DockerSandbox(self.docker_image) if self.backend == "docker" else Sandbox())
        self.box.start()
        for script in self.spec["init"]:
            self.box.exec(script_argv(script, []), timeout=120)   # AgentBench ignores their exit codes
        check = self.spec["check"]
        if check and check[0] is None:
            # the expected value: the example's output on a fresh copy of the machine after init
            self.expected = self.box.exec(script_argv(self.spec["example"], []), timeout=120, scratch=True)
        if self.spec["start"]:
            # background programs (`... &`) return at once; `su - jack` stays in the foreground
            # and the agent's commands then go to jack's shell, as in AgentBench's terminal
            self.box.run(self.spec["start"][1], timeout=3, interrupt=False)
        return [{"role": "user", "content": INSTRUCTIONS + "Now, my problem is:\n\n" + ONE_SHOT[0]["content"]},
                *[dict(m) for m in ONE_SHOT[1:]],
                {"role": "user", "content": "Now, I will start a new problem in a new OS. My problem is:\n\n"
                                            + self.spec["description"]}]

    @classmethod
    def parse_action(cls, reply):
        """AgentBench's extract_action: the last 'Act:' line that is a valid action wins.
        -> ("bash", code) | ("answer", text) | ("finish", None) | None."""
        for act in reversed(re.findall(r"Act:\s*(.+)", reply)):
            if act.lower().startswith("bash"):
                blocks = re.findall(r"```bash\n(.*?)\n```", reply, re.DOTALL)
                return "bash", "\n\n".join(blocks)
            if act.lower().startswith("finish"):
                return "finish", None
            if act.lower().startswith("answer"):
                content = act[6:].strip()
                left, right = content.find("("), content.rfind(")")
                if left == -1 or right == -1:
                    continue
                return "answer", content[left + 1:right]
        return None

    def step(self, reply):
        parsed = self.parse_action(reply)
        if parsed is None:   # AgentBench ends the episode and still judges it, answer None
            success = self.judge(None)
            return Step("", done=True, reward=float(success), success=success, finish="invalid_format",
                        info={"valid_format": False, "valid_action": False, "action": None})
        action, argument = parsed
        # the action with its code: 02's repetition rule and the error analysis compare these
        info = {"valid_format": True, "valid_action": True,
                "action": f"bash: {argument}" if action == "bash" else action}
        if action == "bash":
            output, code = self.box.run(argument, timeout=self.command_timeout)
            self.last_output = output
            info["exit_code"] = code
            output = truncate(output)
            return Step("The output of the OS:\n\n" + output if output else "The output of the OS is empty.", info=info)
        success = self.judge(argument)
        return Step("", done=True, reward=float(success), success=success, finish="answered", info=info)

    def score_unfinished(self):
        """Out of rounds: AgentBench judges the episode with the answer None."""
        success = self.judge(None)
        return float(success), success

    def judge(self, answer):
        """AgentBench's scoring of a committed answer (None for finish)."""
        match, check = self.spec["match"], self.spec["check"]
        if match is not None:
            if answer is None:
                return False
            if match.get("strip", True):
                answer = answer.strip()
            if "answer" in match:
                return answer == match["answer"]
            return re.search(match["regex"], answer) is not None
        params = [str(answer)]
        for script in check:
            output, code = self.expected if script is None else \
                self.box.exec(script_argv(script, params), timeout=120)
            if code != 0:
                return False
            params.append(output)
        return True

    def example_script(self):
        """The task's reference solution as AgentBench ships it, (language, code) or None: what the
        expert replays and the explorer (agentune/explorer.py) builds on."""
        return self.spec["example"]

    def expert_reply(self):
        """Replay the task's example: run it through a bash action, then answer with what it
        printed (or finish, when a script checks the machine and the example printed nothing)."""
        example = self.spec["example"]
        if example is None:
            raise NoReference(f"os task {self.task.id} has no example solution to replay")
        self.expert_turn += 1
        if self.expert_turn == 1:
            return ("Think: I can do this with a few shell commands; let me run them.\n\n"
                    f"Act: bash\n\n```bash\n{example[1].strip()}\n```")
        answer = self.last_output.strip()
        by_script = self.spec["check"] is not None and self.spec["check"][0] is not None
        if by_script and not answer:
            return "Think: The commands ran without errors, so the task is done.\n\nAct: finish"
        answer = answer.replace("\n", " ")   # an answer must fit on the Act line
        return f"Think: The output gives the answer: {answer}.\n\nAct: answer({answer})"

    def close(self):
        if self.box is not None:
            self.box.close()
            self.box = None


def script_argv(script, params):
    """argv that runs a (language, code) script with params, as AgentBench's execute_independent."""
    language, code = script
    if language == "python":
        return ["python3", "-c", code, *params]
    return ["bash", "-c", code] + (["--", *params] if params else [])


def parse_task(item, scripts_dir, where):
    """One AgentBench OS task (JSON object) -> the plain dict the env runs, scripts loaded."""
    def load(obj):
        if obj is None:
            return None
        if isinstance(obj, str):
            return "bash", obj
        language = obj.get("language", "bash")
        if language not in LANGUAGES:
            raise DataError(where, f"script language {language!r} is not supported", f"use one of {LANGUAGES}")
        if "file" in obj:
            file = os.path.join(scripts_dir, obj["file"])
            if not os.path.isfile(file):
                raise DataError(where, f"script file {file} not found",
                                "keep the task file in data/<set>/ next to scripts/<set>/")
            with open(file, encoding="utf-8") as f:
                return language, f.read()
        if "code" in obj:
            return language, obj["code"]
        raise DataError(where, f"a script needs 'file' or 'code', got {json.dumps(obj)[:100]}", "fix the task")

    if not isinstance(item, dict) or "description" not in item or "evaluation" not in item:
        raise DataError(where, "an OS task needs 'description' and 'evaluation'", "fix the task")
    # a 'create' that is not an object (a few upstream tasks have a list there) means no init,
    # exactly as AgentBench reads it
    create = item.get("create") if isinstance(item.get("create"), dict) else {}
    init = create.get("init", [])
    evaluation = item["evaluation"]
    match = check = None
    if "match" in evaluation:
        match = evaluation["match"]
        match = {"answer": match, "strip": True} if isinstance(match, str) else match
    elif "check" in evaluation:
        check = evaluation["check"] if isinstance(evaluation["check"], list) else [evaluation["check"]]
        check = [load(c) for c in check]
    else:
        raise DataError(where, "evaluation needs 'match' or 'check'", "fix the task")
    # the reference solution: evaluation.example, or a top-level example (data/6)
    example = load(evaluation.get("example", item.get("example")))
    if check and check[0] is None and example is None:
        raise DataError(where, "check starts with null (expected = the example's output) but there is no example",
                        "add evaluation.example")
    return {"description": item["description"],
            "init": [load(s) for s in (init if isinstance(init, list) else [init])],
            "start": load(item.get("start")), "match": match, "check": check, "example": example}
