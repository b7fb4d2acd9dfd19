"""ALFWorld: household tasks played in the real ALFWorld text engine (TextWorld's PDDL backend with
the Fast Downward planner), prompted like AgentBench's ALFWorld task, the version AgentTuning
collected and evaluated with (AgentBench.old: THOUGHT/ACTION replies, one solved example of the
same task type, 35 rounds).

The games are the ALFWorld release's `<split>/<task>/<trial>/game.tw-pddl` files. They come as
tarballs under DATA_ROOT/alfworld and are unpacked once into CACHE_DIR/alfworld/<split>. There is
no traj_data.json next to them, so alfworld's own AlfredTWEnv cannot load them: we start the
TextWorld game directly with alfworld's name demangler, as alfworld does.

One difference in wording: these game files use ALFWorld >= 0.3's "move X to Y", while AgentBench
(and the AgentInstruct trajectories) use the older "put X in/on Y". The agent sees and speaks the
older form; we translate at the boundary, and accept both.
"""
import glob
import json
import os
import re
import shutil
import sys
import tarfile

from agentune.envs.base import Env, Step, Task
from agentune.paths import CACHE_DIR, data_path
from agentune.records import DataError

SPLITS = ("train", "valid_seen", "valid_train", "valid_unseen")
TARBALLS = {"valid_unseen": "json_2.1.1-valid_unseen-agentbench.tar.xz"}   # only AgentBench's 70 games
# AgentBench's game lists (data/alfworld/{std,dev}.json: task type -> game paths): std is the test
# set AgentTuning reports (50 valid_unseen games), dev 20 more; both are evaluation data
AGENTBENCH_SPLITS = ("std", "dev")
REPEAT_LIMIT = 3    # AgentBench: the same output 3 times in a row (from the 4th round on) fails

# AgentBench.old's instruction, word for word (typos included: it is what the teacher saw)
INSTRUCTION = (
    "Interact with a household to solve a task. Imagine you are an intelligent agent in a household "
    "environment and your target is to perform actions to complete the task goal. At the beginning "
    "of your interactions, you will be given the detailed description of the current environment "
    "and your goal to accomplish. For each of your turn, you will be given a list of actions which "
    "you can choose one to perform in this turn. You should choose from two actions: \"THOUGHT\" or "
    "\"ACTION\". If you choose \"THOUGHT\", you should first think about the current condition and "
    "plan for your future actions, and then output your action in this turn. Your output must "
    "strictly follow this format:\"THOUGHT: your thoughts.\n ACTION: your next action\n\"; If you "
    "choose \"ACTION\", you should directly output the action in this turn. Your output must "
    "strictly follow this format:\"ACTION: your next action\n\". After your each turn, the "
    "environment will give you immediate feedback based on which you plan your next few steps. if "
    "the envrionment output \"Nothing happened\", that means the previous action is invalid and you "
    "should try more options.\n Reminder: \n1. the action must be chosen from the given available "
    "actions. Any actions except provided available actions will be regarded as illegal. \n2. Think "
    "when necessary, try to act directly more in the process.\n\n")
ACKNOWLEDGE = "OK. I'll follow your instructions and try my best to solve the task."

# AgentBench.old's one solved example per task type (prompts/alfworld_multiturn_react.json),
# unedited: alternating user/agent texts, each with its trailing newline, closed by the
# "ACTION: Task succeeded." turn the engine does not know (the model sees exactly that)
with open(os.path.join(os.path.dirname(__file__), "alfworld_examples.json"), encoding="utf-8") as _f:
    EXAMPLES = {k: v for k, v in json.load(_f).items() if not k.startswith("_")}
# task directory prefix -> example (AgentBench's table)
EXAMPLE_FOR_TASK = {
    "pick_and_place": "put",
    "pick_clean_then_place": "clean",
    "pick_heat_then_place": "heat",
    "pick_cool_then_place": "cool",
    "look_at_obj": "examine",
    "pick_two_obj": "puttwo",
}

# AgentBench's parser: the text after the first "ACTION:", up to the end of its line
ACTION_RE = re.compile(r"ACTION:(.*)")
GOAL_RE = re.compile(r'"Your task is to: ([^"]*)"')
# the engine's wording (ALFWorld >= 0.3) vs the agent's (AgentBench)
ENGINE_PUT_RE = re.compile(r"^move (.+) to (.+)$")
AGENT_PUT_RE = re.compile(r"^put (.+) in/on (.+)$")
ENGINE_PUT_FEEDBACK_RE = re.compile(r"^You move the (.+?) to the (.+?)\.")
ARRIVAL_RE = re.compile(r"^You arrive at [^.]*\. ")


def to_agent_command(command):
    return ENGINE_PUT_RE.sub(r"put \1 in/on \2", command)


def to_engine_command(command):
    return AGENT_PUT_RE.sub(r"move \1 to \2", command)


def to_agent_observation(feedback):
    """As AgentBench shows it: without the arrival sentence, in the older put wording."""
    feedback = ARRIVAL_RE.sub("", feedback.strip())
    return ENGINE_PUT_FEEDBACK_RE.sub(r"You put the \1 in/on the \2.", feedback)


def extract_split(split):
    """The game files of one split, unpacked once into the cache; returns the directory."""
    if split not in SPLITS:
        raise SystemExit(f"alfworld: unknown split {split!r}; known: {', '.join(SPLITS)}")
    tarball = data_path("alfworld", TARBALLS.get(split, f"json_2.1.1-{split}.tar.xz"))
    return extract_tarball(tarball, os.path.join(CACHE_DIR, "alfworld", split))


def extract_tarball(tarball, dest):
    """Unpack into dest once; concurrent callers are safe (unpack aside, then rename)."""
    if os.path.isdir(dest):
        return dest
    if not os.path.isfile(tarball):
        raise DataError(tarball, "ALFWorld game tarball not found",
                        "run scripts/download_data.sh or set AGENTUNE_DATA to the data directory")
    tmp = f"{dest}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter="data")
    # the release nests the games as json_2.1.1/<split>/...: keep only the <split> level
    inner = glob.glob(os.path.join(tmp, "json_2.1.1", "*"))
    top = inner[0] if len(inner) == 1 else tmp
    try:
        os.rename(top, dest)
    except OSError:  # another process got there first
        if not os.path.isdir(dest):
            raise
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


def process_action(reply, choices):
    """AgentBench's process_action: (what the agent asked for, the command played). The text after
    "ACTION:" (else the whole reply), stripped, lower-cased, its first line; when it is not one of
    the admissible commands, the admissible command with the highest sentence BLEU against it
    (NLTK, smoothing method 4) if that is above 0.01."""
    match = re.search("ACTION:(.*)\n", reply) or re.search("ACTION:(.*)", reply)
    wanted = (match.group(1) if match else reply).strip().lower().split("\n")[0]
    if not choices or wanted in choices:
        return wanted, wanted
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    smoothing = SmoothingFunction().method4
    candidate = wanted.split()
    try:
        bleus = [sentence_bleu([choice.split()], candidate, smoothing_function=smoothing) for choice in choices]
    except Exception:   # (an empty action) upstream catches it and plays the text as it is
        return wanted, wanted
    best = max(range(len(choices)), key=lambda i: (bleus[i], -i))   # the first of equals, as argmax
    return wanted, (choices[best] if bleus[best] > 0.01 else wanted)


def example_for(task_id):
    task_dir = task_id.split("/")[-2]
    for prefix, example in EXAMPLE_FOR_TASK.items():
        if task_dir.startswith(prefix):
            return example
    raise DataError(task_id, f"unknown ALFWorld task type {task_dir!r}",
                    f"task directories start with one of {', '.join(EXAMPLE_FOR_TASK)}")


def thought_for(command, next_command, goal, first):
    """A short rationale for an expert action, from the action and the one after it (the
    environment, not the thought, is judged)."""
    words = command.split(" ")
    verb, rest = words[0], " ".join(words[1:])
    if verb == "go":
        place = rest.removeprefix("to ")
        after = next_command.split(" ")
        if after[0] == "take":
            thought = f"I am looking for a {after[1]}. Let me check {place}."
        elif after[0] in ("heat", "cool", "clean"):
            thought = f"I take the {' '.join(after[1:3])} to {place} to {after[0]} it."
        elif after[0] == "put":
            thought = f"Now I bring the {' '.join(after[1:3])} to {place}."
        elif after[0] == "use":
            thought = f"I need a light. Let me check {place}."
        else:
            thought = f"Let me check {place}."
    elif verb == "open":
        thought = f"The {rest} is closed. I open it to see what is inside."
    elif verb == "take":
        thought = f"Here is a {rest.split(' from ')[0]}. I take it."
    elif verb == "put":
        thought = "I put it here, as the task asks."
    elif verb in ("heat", "cool", "clean"):
        thought = f"I {verb} the {rest.split(' with ')[0]} here."
    elif verb == "use":
        thought = f"I turn on the {rest} to look at what I hold under its light."
    else:
        thought = "This is the next step of my plan."
    if first:
        return f"The task is to {goal.rstrip('.')}. {thought}"
    return thought


def speed_up_textworld():
    """Spare TextWorld's PDDL engine work it repeats, keeping every result it computes the same
    (installed once per process, before the first game starts; tests/test_alfworld_env.py plays
    games both ways and compares every observation and admissible command):

    - a game's load() translates its PDDL problem with Fast Downward (twice: the game's task and an
      optimised one for replanning), and the reset() that follows translates the same problem
      again: the translations of the last problem are handed to the next identical request once
      (the engine only reads them). A reset then costs half (~0.65 -> ~0.35 CPU-s here);
    - every step derives each admissible command's text and the feedback through the game's
      grammar, parsing the same few templates with a PEG parser each time (tatsu; ~60% of a
      step): the parsed templates are kept and each use gets its own deep copy, as the grammar does
      with its own rules; the conjunctive queries its conditions parse are kept too (the engine
      only reads them)."""
    import copy
    import fast_downward
    from textworld.envs.pddl import textgen
    from textworld.logic import Rule
    if getattr(fast_downward, "_agentune_fast", False):
        return
    translate, translations = fast_downward.pddl2sas, {}

    def pddl2sas(domain, problem, verbose=False, optimize=False):
        key = (domain, problem, verbose, optimize)
        if key in translations:
            return translations.pop(key)  # once: a later reset of the same game translates anew
        for old in [k for k in translations if k[:2] != key[:2]]:
            del translations[old]
        translations[key] = translate(domain, problem, verbose=verbose, optimize=optimize)
        return translations[key]

    parse, parsed = textgen._parse_and_convert, {}

    def parse_and_convert(text, rule_name, **options):
        key = (text, rule_name, tuple(sorted(options.items())))
        if key not in parsed:
            parsed[key] = parse(text, rule_name=rule_name, **options)
        return copy.deepcopy(parsed[key])  # derive() sets each symbol's context

    query, queries = Rule.parse_conjunctive_query.__func__, {}

    def parse_conjunctive_query(cls, expr):
        if expr not in queries:
            queries[expr] = query(cls, expr)
        return queries[expr]

    fast_downward.pddl2sas = pddl2sas
    textgen._parse_and_convert = parse_and_convert
    Rule.parse_conjunctive_query = classmethod(parse_conjunctive_query)
    fast_downward._agentune_fast = True


class ALFWorldEnv(Env):
    name = "alfworld"
    max_turns = 35          # AgentBench.old's max_step for ALFWorld (configs/tasks/alfworld/*.yaml)
    max_reply_tokens = 128  # AgentBench's generation limit per reply
    test_split = "std"
    # Each engine loads its own copy of Fast Downward's library, but the Python side (PDDL
    # translation, grammar derivation) holds the GIL, and the translator configures itself
    # through module globals and sys.argv, so two games loading at once in threads can mix
    # settings: one process per worker
    concurrency = "processes"
    fast_textworld = True   # speed_up_textworld() (False: TextWorld as it comes, for comparison)

    def __init__(self):
        self.game = None      # one TextWorld environment, reloaded with each task's game file
        self.state = None     # the engine's last GameState

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """Games of a split: "std" (AgentBench's test set, 50 valid_unseen games: what 05_eval.py
        evaluates on), "dev" (AgentBench's 20 other valid_unseen games), "train" (3,553 games:
        the default, what 01_collect.py collects from), "valid_seen" or "valid_train" (note:
        their scenes are train's); or every game of `path`: a game.tw-pddl file, a directory of
        them, or a tarball."""
        if path is None and split in AGENTBENCH_SPLITS:
            listing = data_path("agentbench", "alfworld", f"{split}.json")
            if not os.path.isfile(listing):
                raise DataError(listing, "AgentBench's ALFWorld game list not found",
                                "run scripts/download_data.sh or set AGENTUNE_DATA to the data directory")
            with open(listing, encoding="utf-8") as f:
                games = [g for paths in json.load(f).values() for g in paths]
            root = extract_split("valid_unseen")
            files = [os.path.join(root, g.split("valid_unseen/", 1)[1]) for g in games]
            missing = [f for f in files if not os.path.isfile(f)]
            if missing:
                raise DataError(listing, f"{len(missing)} listed games are not in the valid_unseen archive "
                                f"(first: {missing[0]})", "check the archive json_2.1.1-valid_unseen-agentbench.tar.xz")
            return [cls._task(f) for f in files]
        if path is None:
            root = extract_split(split or "train")
        elif path.endswith((".tar.xz", ".tar.gz", ".tar")):
            # json_2.1.1-valid_seen.tar.xz shares its cache directory with split="valid_seen"
            name = os.path.basename(path).split(".tar")[0].removeprefix("json_2.1.1-")
            root = extract_tarball(path, os.path.join(CACHE_DIR, "alfworld", name))
        else:
            root = path
        if os.path.isfile(root):
            gamefiles = [root]
        else:
            gamefiles = sorted(glob.glob(os.path.join(root, "**", "game.tw-pddl"), recursive=True))
        if not gamefiles:
            raise DataError(path or root, "no ALFWorld game (game.tw-pddl) found",
                            "point --tasks at a game file, a directory of <task>/<trial>/game.tw-pddl or a tarball")
        return [cls._task(gamefile) for gamefile in gamefiles]

    @classmethod
    def task_key(cls, task):
        """A game is its task folder and trial, whatever split directory holds it."""
        return "/".join(task.id.split("/")[-2:])

    @staticmethod
    def _task(gamefile):
        # ids as AgentBench names games: split/task/trial
        task_id = "/".join(os.path.abspath(gamefile).split(os.sep)[-4:-1])
        with open(gamefile, encoding="utf-8") as f:
            goal = GOAL_RE.search(json.load(f).get("grammar", ""))
        if goal is None:
            raise DataError(gamefile, "no 'Your task is to: ...' in the game's grammar",
                            "is this an ALFWorld game.tw-pddl file?")
        return Task(id=task_id, prompt=goal.group(1),
                    data={"gamefile": os.path.abspath(gamefile), "example": example_for(task_id)})

    def reset(self, task):
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

        if self.fast_textworld:
            speed_up_textworld()
        gamefile = task.data["gamefile"]
        argv = sys.argv[:]  # Fast Downward's PDDL translator overwrites sys.argv: keep ours
        try:
            if self.game is None:
                infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile", "walkthrough"])
                self.game = textworld.start(gamefile, infos, wrappers=[AlfredDemangler(shuffle=False), AlfredInfos])
            else:
                self.game.load(gamefile)
            self.state = self.game.reset()
        finally:
            sys.argv = argv
        self.goal = task.prompt
        self.turns = 0
        self.outputs = []            # the agent's raw replies (AgentBench's repetition test)
        self.walkthrough = list(self.state["extra.walkthrough"])
        self.on_walkthrough = True   # every admissible action so far followed the walkthrough
        self.plan = []               # the planner's remaining commands, once off the walkthrough

        # the intro is "-= Welcome to TextWorld, ALFRED! =-\n\n<room>\n\n<task>": AgentBench drops the banner
        observation = "\n".join(self.state.feedback.split("\n\n")[1:])
        example = EXAMPLES[task.data["example"]]
        messages = [{"role": "user", "content": INSTRUCTION},
                    {"role": "assistant", "content": ACKNOWLEDGE}]
        for i, text in enumerate(example):
            content = "Here is one example.\n" + text if i == 0 else text
            messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": content})
        messages.append({"role": "user", "content": "Here is your task. " + observation})
        return messages

    @classmethod
    def parse_action(cls, reply):
        """("act", command) for a reply with "ACTION: <command>", else None (a bad format: the
        env still plays the reply's first line, as AgentBench)."""
        match = ACTION_RE.search(reply)
        if match is None:
            return None
        command = " ".join(match.group(1).lower().split()).rstrip(".")
        return ("act", command) if command else None

    def admissible_commands(self):
        """What the agent may do now, in its own wording."""
        return [to_agent_command(c) for c in self.state["admissible_commands"]]

    def step(self, reply):
        self.turns += 1
        self.outputs.append(reply)
        valid_format = self.parse_action(reply) is not None
        choices = self.admissible_commands()
        wanted, command = process_action(reply, choices)
        if to_agent_command(wanted) in choices:   # the engine's own "move X to Y" wording is accepted too
            wanted = command = to_agent_command(wanted)
        info = {"valid_format": valid_format, "valid_action": wanted in choices, "action": command}
        engine_command = to_engine_command(command)
        if engine_command in self.state["admissible_commands"]:
            self.follow(engine_command)
        # a command that is still not admissible goes to the engine too: it answers "Nothing
        # happens." and leaves the game as it was
        self.state, _, _ = self.game.step(engine_command)
        # AgentBench tests repetition before it looks at the game's end
        if len(self.outputs) > REPEAT_LIMIT and len(set(self.outputs[-REPEAT_LIMIT:])) == 1:
            return Step("", done=True, finish="repetition", info=info)
        if self.state["won"]:
            return Step("", done=True, reward=1.0, success=True, finish="answered", info=info)
        if self.turns >= self.max_turns:
            return Step("", done=True, finish="max_turns", info=info)
        return Step(to_agent_observation(self.state.feedback), info=info)

    def follow(self, command):
        """Track the reference solution through an admissible command about to be played."""
        if self.on_walkthrough and self.walkthrough and command == self.walkthrough[0]:
            self.walkthrough.pop(0)
        elif self.plan and command == self.plan[0]:
            self.plan.pop(0)
        else:
            self.on_walkthrough, self.plan = False, []

    def expert_reply(self):
        """The walkthrough's next command, or, once the episode left it (or it stopped being
        playable), the planner's next command from the current state."""
        admissible = self.state["admissible_commands"]
        if self.on_walkthrough and self.walkthrough and self.walkthrough[0] in admissible:
            solution = self.walkthrough
        else:
            self.on_walkthrough = False
            if not self.plan or self.plan[0] not in admissible:
                self.plan = self.replan()
            if not self.plan:
                raise RuntimeError("the planner found no plan from this state")
            solution = self.plan
        command = to_agent_command(solution[0])
        next_command = to_agent_command(solution[1]) if len(solution) > 1 else ""
        thought = thought_for(command, next_command, self.goal, first=self.turns == 0)
        return f"THOUGHT: {thought}\nACTION: {command}"

    def replan(self):
        """Fast Downward's plan from the current state (what EnvInfos(policy_commands=True)
        computes after every step; asked for here only when the expert needs it)."""
        engine = self.game.unwrapped
        return list(engine._pddl_state.replan(engine._entity_infos))

    def close(self):
        if self.game is not None:
            self.game.close()
            self.game = None
