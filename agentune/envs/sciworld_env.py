"""ScienceWorld (held-out): elementary-science tasks in a text simulator running in a JVM.

The evaluation follows AgentTuning's held-out ScienceWorld harness (adapted from SwiftSage):
the "easy" simplifications (doors and containers open, ...), per task type up to 10 test
variations drawn with random.seed(1), replies "Think: ..." (answered "OK.") or "Action: ...",
an action the simulator does not know is replaced by the closest valid action (token overlap),
a negative score (e.g. focusing on the wrong object) ends the episode keeping the last score,
and the episode also ends after 100 simulator moves or when the agent loops (but not while it
waits: the gold paths of the growing tasks wait many times in a row).
The paper's ScienceWorld score is the mean over the 30 task types (task.data["task_name"]) of
the mean score of their variations.

Each env owns one JVM (py4j gateway). We talk to the simulator's PythonInterface directly rather
than through scienceworld.ScienceWorldEnv because its step() builds the list of valid actions on
every move (200-750 ms) and it cannot cap the JVM heap.
"""
import atexit
import json
import os
import random
import re
import threading

from py4j.java_gateway import GatewayParameters, JavaGateway, launch_gateway
from scienceworld.constants import BASEPATH, JAR_PATH
from scienceworld.version import __version__ as SCIENCEWORLD_VERSION

from agentune.envs.base import Env, Step, Task
from agentune.paths import CACHE_DIR

SIMPLIFICATIONS = "easy"
STEP_LIMIT = 100          # simulator moves per episode (the env's default, as in AgentTuning)
JVM_OPTIONS = ["-Xmx1g", "-XX:+UseSerialGC"]  # uncapped, each JVM grows to ~2 GB
UNKNOWN_ACTION = "No known action matches that input."
ROOMS = ["hallway", "greenhouse", "kitchen", "bathroom", "outside", "workshop", "art studio",
         "foundry", "bedroom", "living room"]

INSTRUCTIONS = """Interact with a household to solve a task. Each turn, you can choose from one of the following options:
1. Think: You could think step-by-step to tell your reasoning and planning to solve the task, which will help you handle the task easier.
2. Action: You could interact with the environment freely to solve the task, but remember to refer to your thought and act accordingly.
Prepend your action with "Think: " or "Action: ", e.g. "Think: Now I have picked up the object. Next, I need to move to the location of the answer box." or "Action: go to kitchen".
Exactly only one option could be chosen in a turn."""
EXAMPLE_CHARS = 8000      # about 2k tokens of one-shot example
NEW_TASK = "The preceding task has ended. Now, I will start a new task.\n"
FORMAT_HINT = 'Invalid format. Answer with exactly one "Think: <your reasoning>" or "Action: <an action>".'


def write_json(path, obj):
    """Whole or not at all, also when several envs write the same cache file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def trim_example(example):
    """AgentTuning drops the example's oldest (action, observation) turns once the prompt
    outgrows 4096 tokens; we do it up front, to a fixed budget, so every episode has room."""
    example = list(example)
    while sum(len(m["content"]) for m in example) > EXAMPLE_CHARS and len(example) > 5:
        del example[3:5]         # keep the task, the first thought and its "OK."
    return example


def clean(text):
    # AgentTuning flattens observations onto one line
    return text.replace("\n", " ").replace("\t", " ")


class Simulator:
    """One ScienceWorld JVM. close() always ends it; so does our process's exit, because the JVM
    is started with --die-on-broken-pipe on its stdin."""

    def __init__(self):
        port, self.proc = launch_gateway(classpath=JAR_PATH, javaopts=JVM_OPTIONS, cwd=BASEPATH,
                                         die_on_exit=True, return_proc=True)
        self.gateway = JavaGateway(gateway_parameters=GatewayParameters(auto_field=True, port=port),
                                   java_process=self.proc)
        self.server = self.gateway.jvm.scienceworld.runtime.pythonapi.PythonInterface()
        atexit.register(self.close)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.gateway.shutdown()
            except Exception:  # the JVM may already be gone; we only need it dead
                pass
            try:
                self.proc.stdin.close()   # --die-on-broken-pipe: the JVM exits
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        atexit.unregister(self.close)

    def load(self, task_name, variation, gold_path=False):
        self.server.load(task_name, variation, SIMPLIFICATIONS, gold_path)
        self.server.reset()
        return self.server.step("look around")

    def task_description(self):
        return self.server.freeActionTaskDesc().removeprefix("Task Description:").strip()

    def score(self):
        return int(round(100 * self.server.getScore()))

    def variations(self, task_name, split):
        self.server.load(task_name, 0, SIMPLIFICATIONS, False)
        get = {"train": self.server.getVariationsTrain, "dev": self.server.getVariationsDev,
               "test": self.server.getVariationsTest}[split]
        return list(get())


def evaluation_variations(task_index, variations):
    """AgentTuning's test subset: the variations shuffled with seed 1, the first 10 (5 for task
    25 and 9 for task 15, indices into the alphabetical task list)."""
    n = {25: 5, 15: 9}.get(task_index, 10)
    variations = list(variations)
    random.seed(1)
    random.shuffle(variations)
    return variations[:n]


def closest_valid_action(action, valid_actions):
    """AgentTuning's fallback for an action the simulator does not know: the valid action
    sharing most words with it. Focusing commits to an answer (a wrong focus fails the task), so
    unlike AgentTuning we map to a focus action only when the agent asked to focus."""
    invalid_focus = {f"focus on {x}" for x in ["agent", "air"] + ROOMS}
    candidates = sorted(set(valid_actions) | {f"open door to {r}" for r in ROOMS})
    candidates = [a for a in candidates if a not in invalid_focus
                  and (action.startswith("focus on") or not a.startswith("focus on"))]
    words = set(action.split())
    best, best_overlap = action, 0
    for candidate in candidates:
        overlap = len(words & set(candidate.split()))
        if overlap > best_overlap:
            best, best_overlap = candidate, overlap
    return best


class SciWorldEnv(Env):
    name = "sciworld"
    max_turns = 2 * STEP_LIMIT   # AgentTuning's bound on replies (thoughts included)
    max_reply_tokens = 256       # AgentTuning's ScienceWorld generation limit
    concurrency = "threads"      # each env owns its JVM; the Python side only waits on a socket

    def __init__(self, step_limit=STEP_LIMIT):
        # step_limit: simulator moves (about one per tick of world time) before the episode ends;
        # some gold paths need more than the protocol's 100 (bench/heldout_experts.py shows which)
        self.step_limit = step_limit
        self.sim = Simulator()
        self.task = None

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """path: a text file of task ids "<task-name>#<variation>" (one a line), else split
        "test" (default: AgentTuning's subset of the test variations), "dev" or "train" (all)."""
        if path:
            with open(path) as f:
                ids = [line.strip() for line in f if line.strip()]
            return [cls.make_task(task_id) for task_id in ids]
        split = split or "test"
        cache = os.path.join(CACHE_DIR, f"sciworld-{SCIENCEWORLD_VERSION}", f"tasks-{split}.json")
        if os.path.exists(cache):
            with open(cache) as f:
                return [Task(**t) for t in json.load(f)]
        sim = Simulator()
        try:
            tasks = []
            for index, task_name in enumerate(sorted(sim.server.getTaskNames())):
                variations = sim.variations(task_name, split)
                if split == "test":
                    variations = evaluation_variations(index, variations)
                for variation in variations:
                    sim.load(task_name, variation)
                    tasks.append(Task(id=f"{task_name}#{variation}", prompt=sim.task_description(),
                                      data={"task_name": task_name, "variation": variation}))
        finally:
            sim.close()
        # listing needs one simulator load per variation (~0.1 s each): keep the result
        write_json(cache, [t.__dict__ for t in tasks])
        return tasks

    @staticmethod
    def make_task(task_id):
        task_name, _, variation = task_id.rpartition("#")
        if not task_name or not variation.isdigit():
            raise ValueError(f"bad ScienceWorld task id {task_id!r}: expected <task-name>#<variation>")
        return Task(id=task_id, prompt="", data={"task_name": task_name, "variation": int(variation)})

    # -- episode --------------------------------------------------------------------------

    def reset(self, task):
        self.task = task
        example = trim_example(self.one_shot(task.data["task_name"]))
        observation = self.sim.load(task.data["task_name"], task.data["variation"])
        self.actions = []        # what was sent to the simulator after the first look around
        self.recent = [("look around", "")]
        self.last_score = 0
        self.gold = None
        first = NEW_TASK + clean(observation) + "\n" + self.sim.task_description()
        return [{"role": "user", "content": INSTRUCTIONS}, {"role": "assistant", "content": "Ok."},
                *example, {"role": "user", "content": first}]

    def one_shot(self, task_name):
        """The gold trajectory of the first train variation of the same task type, as
        user/assistant turns (generated by the real simulator once, then cached)."""
        path = os.path.join(CACHE_DIR, f"sciworld-{SCIENCEWORLD_VERSION}", "oneshot", f"{task_name}.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        variation = self.sim.variations(task_name, "train")[0]
        observation = self.sim.load(task_name, variation, gold_path=True)
        gold = list(self.sim.server.getGoldActionSequence())
        messages = [{"role": "user", "content": clean(observation) + "\n" + self.sim.task_description()},
                    {"role": "assistant", "content": "Think: To solve the task, I need to find the "
                     "objects it names, focus on the right one, and act on it step by step."},
                    {"role": "user", "content": "OK."}]
        shown = []
        for action in gold:
            observation = clean(self.sim.server.step(action))
            if shown[-2:] == [action, action]:
                # a long stretch of one action (watching a block slide, waiting for plants) is
                # shown twice, the second time with the stretch's last observation
                messages[-1]["content"] = observation
                continue
            shown.append(action)
            messages.append({"role": "assistant", "content": f"Action: {action}"})
            messages.append({"role": "user", "content": observation})
        assert self.sim.score() == 100, f"gold path of {task_name}#{variation} scored {self.sim.score()}"
        messages.pop()           # the example ends on the agent's last action, as AgentTuning's
        write_json(path, messages)
        return messages

    @classmethod
    def parse_action(cls, reply):
        """("action", text) for a line "Action: ...", else ("think", text) for a reply that
        starts with "Think:", else None."""
        match = re.search(r"^\s*Action:\s*(.+?)\s*$", reply, re.MULTILINE)
        if match:
            return "action", match.group(1)
        if reply.strip().startswith("Think:"):
            return "think", reply.strip()[len("Think:"):].strip()
        return None

    def step(self, reply):
        parsed = self.parse_action(reply)
        if parsed is None:
            return self.after(reply.strip(), FORMAT_HINT, {"valid_format": False, "valid_action": False, "action": ""})
        kind, text = parsed
        if kind == "think":
            return self.after(reply.strip(), "OK.", {"valid_format": True, "valid_action": True, "action": "think"})
        action = text.replace("green house", "greenhouse")
        observation = self.sim.server.step(action)
        valid = observation.strip() != UNKNOWN_ACTION
        if not valid:
            # building the valid-action list is slow, so only for actions the simulator rejected
            action = closest_valid_action(action, self.sim.server.getValidActionObjectCombinations())
            observation = self.sim.server.step(action)
        self.actions.append(action)
        return self.after(action, observation, {"valid_format": True, "valid_action": valid, "action": action})

    def after(self, action, observation, info):
        observation = clean(observation)
        score = self.sim.score()
        if score < 0:            # a failed task: keep the score reached before (AgentTuning's no_stop)
            return Step("", done=True, reward=self.last_score / 100, success=False, finish="answered", info=info)
        self.last_score = score
        if score >= 100 or self.sim.server.getCompleted():
            return Step("", done=True, reward=score / 100, success=score >= 100, finish="answered", info=info)
        if self.sim.server.getNumMoves() > self.step_limit:
            return Step("", done=True, reward=score / 100, finish="max_turns", info=info)
        # AgentTuning stops an agent that is looping: 5 recent (action, observation) pairs, 2
        # distinct. Not while it waits: the gold paths wait many times in a row for plants to grow
        self.recent.append((action, observation))
        last = self.recent[-5:]
        if len(last) == 5 and len(set(last)) == 2 and not any(a.startswith("wait") for a, _ in last):
            return Step("", done=True, reward=score / 100, finish="max_turns", info={**info, "stop": "loop"})
        return Step(observation, reward=score / 100, info=info)

    def score_unfinished(self):
        """Cut by the reply limit or the context: the score reached so far counts (AgentTuning)."""
        return self.last_score / 100, self.last_score >= 100

    def expert_reply(self):
        """The next action of the simulator's gold path (valid while the episode followed it)."""
        if self.gold is None:
            # generating the gold path costs seconds, so only for the expert: reload the task
            # with it and replay what was done so far
            self.sim.load(self.task.data["task_name"], self.task.data["variation"], gold_path=True)
            self.gold = list(self.sim.server.getGoldActionSequence())
            for action in self.actions:
                self.sim.server.step(action)
        index = len(self.actions)
        return f"Action: {self.gold[index] if index < len(self.gold) else 'look around'}"

    def close(self):
        self.sim.close()
