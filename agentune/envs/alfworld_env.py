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

SPLITS = ("train", "valid_seen", "valid_train")

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

# AgentBench's one solved example per task type (prompts/alfworld_multiturn_react.json), as
# alternating user/assistant turns. AgentBench closes each example with a "Task succeeded."
# action the engine does not know; we end it at the winning action instead.
EXAMPLES = {
    "put": [
        "You are in the middle of a room. Looking quickly around you, you see a cabinet 4, a cabinet 3, a cabinet 2, a cabinet 1, a countertop 1, a garbagecan 1, a handtowelholder 2, a handtowelholder 1, a sinkbasin 2, a sinkbasin 1, a toilet 1, a toiletpaperhanger 1, and a towelholder 1.\nYour task is to: put some spraybottle on toilet.",
        "THOUGHT: The task is to put some spraybottle on toilet, so first i need to search the room for some spraybottle. After finding the spraybottle, i need to take it to the toilet. I wil start my search on cabinets.\nACTION: go to cabinet 1",
        "On the cabinet 1, you see a cloth 1, a soapbar 1, a soapbottle 1.",
        "ACTION: go to cabinet 2",
        "The cabinet 2 is closed.",
        "ACTION: open cabinet 2",
        "You open the cabinet 2. The cabinet 2 is open. In it, you see a candle 1, and a spraybottle 2.",
        "THOUGHT: I have found a spraybottle 2. To put it on toilet, i need to take it with me and go to the toilet.\nACTION: take spraybottle 2 from cabinet 2",
        "You pick up the spraybottle 2 from the cabinet 2.",
        "ACTION: go to toilet 1",
        "On the toilet 1, you see a soapbottle 2.",
        "THOUGHT: Since the toilet can hold many things, just put the spraybottle on the toilet.\nACTION: put spraybottle 2 in/on toilet 1",
    ],
    "clean": [
        "You are in the middle of a room. Looking quickly around you, you see a bathtubbasin 1, a garbagecan 1, a handtowelholder 1, a shelf 3, a shelf 2, a shelf 1, a sinkbasin 1, a toilet 1, a toiletpaperhanger 1, and a towelholder 1.\nYour task is to: clean some soapbar and put it in toilet.",
        "THOUGHT: The task is to clean some soapbar and put it in toilet, so i need to first find some soapbar, and clean it in a sinkbasin. Soapbar is likely to be found in toilet, so i'll start to search there.\nACTION: go to toilet 1",
        "On the toilet 1, you see a soapbar 4, and a soapbar 3.",
        "ACTION: take soapbar 4 from toilet 1",
        "You pick up the soapbar 4 from the toilet 1.",
        "THOUGHT: I have taken soapbar 4 with me, the next step is to clean it, so i need to go to the sinkbasin.\nACTION: go to sinkbasin 1",
        "On the sinkbasin 1, you see nothing.",
        "ACTION: clean soapbar 4 with sinkbasin 1",
        "You clean the soapbar 4 using the sinkbasin 1.",
        "THOUGHT: The task is to clean some soapbar and put it in toilet. I have cleaned soapbar 4, then i need to put it in the toilet, so i need to go to the toilet now.\nACTION: go to toilet 1",
        "On the toilet 1, you see a soapbar 3.",
        "ACTION: put soapbar 4 in/on toilet 1",
    ],
    "examine": [
        "You are in the middle of a room. Looking quickly around you, you see a coffeetable 1, a diningtable 1, a drawer 4, a drawer 3, a drawer 2, a drawer 1, a dresser 1, a garbagecan 1, a sidetable 2, a sidetable 1, and a sofa 1.\nYour task is to: look at statue under the desklamp.",
        "THOUGHT: The task is to look at statue under the desklamp, so i need to find the statue first and then find the desklamp and look at the statue under the light. I'll start my search on dresser 1.\nACTION: go to dresser 1",
        "On the dresser 1, you see a cellphone 3, a newspaper 2, a statue 1, and a television 1.",
        "ACTION: take statue 1 from dresser 1",
        "You pick up the statue 1 from the dresser 1.",
        "THOUGHT: I have taken the statue with me and i need to find a desklamp now. I'll start my search on sidetable 1.\nACTION: go to sidetable 1",
        "On the sidetable 1, you see nothing.",
        "ACTION: go to sidetable 2",
        "On the sidetable 2, you see a desklamp 3, a newspaper 1, and a statue 2.",
        "ACTION: use desklamp 3",
    ],
    "heat": [
        "You are in the middle of a room. Looking quickly around you, you see a cabinet 13, a cabinet 12, a cabinet 11, a cabinet 10, a cabinet 9, a cabinet 8, a cabinet 7, a cabinet 6, a cabinet 5, a cabinet 4, a cabinet 3, a cabinet 2, a cabinet 1, a coffeemachine 1, a countertop 1, a diningtable 1, a drawer 1, a fridge 1, a garbagecan 1, a microwave 1, a shelf 3, a shelf 2, a shelf 1, a sinkbasin 1, a stoveburner 4, a stoveburner 3, a stoveburner 2, a stoveburner 1, and a toaster 1.\nYour task is to: put a hot apple in fridge.",
        "THOUGHT: The task is to put a hot apple in fridge. So i need to first find an apple and heat it, i'll start my search on diningtables.\nACTION: go to diningtable 1",
        "On the diningtable 1, you see a apple 1, a bread 1, a fork 3, a fork 2, a fork 1, a mug 2, a peppershaker 3, a plate 2, a pot 1, a soapbottle 3, a spatula 1, a spoon 3, a spoon 2, a spoon 1, a winebottle 3, and a winebottle 2.",
        "ACTION: take apple 1 from diningtable 1",
        "You pick up the apple 1 from the diningtable 1.",
        "THOUGHT: I noticed that there is a microwave 1 in the room, i will use it to heat the apple.\nACTION: go to microwave 1",
        "The microwave 1 is closed.",
        "ACTION: heat apple 1 with microwave 1",
        "You heat the apple 1 using the microwave 1.",
        "THOUGHT: The apple is heated and i will take it to the fridge and put it in the fridge.\nACTION: go to fridge 1",
        "The fridge 1 is open. In it, you see a cup 1, and a egg 1.",
        "ACTION: put apple 1 in/on fridge 1",
    ],
    "cool": [
        "You are in the middle of a room. Looking quickly around you, you see a cabinet 16, a cabinet 15, a cabinet 14, a cabinet 13, a cabinet 12, a cabinet 11, a cabinet 10, a cabinet 9, a cabinet 8, a cabinet 7, a cabinet 6, a cabinet 5, a cabinet 4, a cabinet 3, a cabinet 2, a cabinet 1, a coffeemachine 1, a countertop 2, a countertop 1, a diningtable 1, a drawer 5, a drawer 4, a drawer 3, a drawer 2, a drawer 1, a fridge 1, a garbagecan 1, a microwave 1, a safe 1, a sinkbasin 1, a stoveburner 4, a stoveburner 3, a stoveburner 2, a stoveburner 1, and a toaster 1.\nYour task is to: cool some pan and put it in stoveburner.",
        "THOUGHT: The task is to cool some pan and put it in stoveburner, so i need to first find a pan and cool it. A pan is likely to be found on a stoveburner, so i plan to search all the stoveburners.\nACTION: go to stoveburner 1",
        "On the stoveburner 1, you see nothing.",
        "ACTION: go to stoveburner 2",
        "On the stoveburner 2, you see a pot 1.",
        "ACTION: go to stoveburner 3",
        "On the stoveburner 3, you see a pan 1.",
        "ACTION: take pan 1 from stoveburner 3",
        "You pick up the pan 1 from the stoveburner 3.",
        "THOUGHT: Now i have taken the pan 1 with me and i want to cool it using a fridge.\nACTION: go to fridge 1",
        "The fridge 1 is closed.",
        "ACTION: cool pan 1 with fridge 1",
        "You cool the pan 1 using the fridge 1.",
        "THOUGHT: The pan 1 is cooled, then i need to return the cooled pan 1 to a stoveburner and put it on the stoveburner.\nACTION: go to stoveburner 1",
        "On the stoveburner 1, you see nothing.",
        "ACTION: put pan 1 in/on stoveburner 1",
    ],
    "puttwo": [
        "You are in the middle of a room. Looking quickly around you, you see a coffeetable 1, a diningtable 1, a drawer 4, a drawer 3, a drawer 2, a drawer 1, a dresser 1, a garbagecan 1, a sidetable 2, a sidetable 1, and a sofa 1.\nYour task is to: put two cellphone in sofa.",
        "THOUGHT: The task is to put two cellphone in sofa, so i need to first find a cellphone and put it on sofa. I'll start my search on coffeetables.\nACTION: go to coffeetable 1",
        "On the coffeetable 1, you see a box 1, a cellphone 3, and a plate 1.",
        "ACTION: take cellphone 3 from coffeetable 1",
        "You pick up the cellphone 3 from the coffeetable 1.",
        "ACTION: go to sofa 1",
        "On the sofa 1, you see a newspaper 2, a pillow 1, a remotecontrol 2, and a remotecontrol 1.",
        "ACTION: put cellphone 3 in/on sofa 1",
        "You put the cellphone 3 in/on the sofa 1.",
        "THOUGHT: In order to put two cellphones in sofa, i need to search for another phone, i'll start my search on diningtables.\nACTION: go to diningtable 1",
        "On the diningtable 1, you see a cellphone 2, a keychain 2, a laptop 1, a statue 2, and a statue 1.",
        "ACTION: take cellphone 2 from diningtable 1",
        "You pick up the cellphone 2 from the diningtable 1.",
        "ACTION: go to sofa 1",
        "On the sofa 1, you see a cellphone 3, a newspaper 2, a pillow 1, a remotecontrol 2, and a remotecontrol 1.",
        "ACTION: put cellphone 2 in/on sofa 1",
    ],
}
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
    tarball = data_path("alfworld", f"json_2.1.1-{split}.tar.xz")
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


class ALFWorldEnv(Env):
    name = "alfworld"
    max_turns = 35          # AgentBench.old's max_step for ALFWorld (configs/tasks/alfworld/*.yaml)
    # Each engine loads its own copy of Fast Downward's library, but the Python side (PDDL
    # translation, grammar derivation) holds the GIL, and the translator configures itself
    # through module globals and sys.argv, so two games loading at once in threads can mix
    # settings: one process per worker
    concurrency = "processes"

    def __init__(self):
        self.game = None      # one TextWorld environment, reloaded with each task's game file
        self.state = None     # the engine's last GameState

    @classmethod
    def load_tasks(cls, path=None, split=None):
        """Games of a split (default train: the collection split; valid_seen and valid_train are
        for evaluation), or of `path`: a game.tw-pddl file, a directory of them, or a tarball."""
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
        tasks = []
        for gamefile in gamefiles:
            # ids as AgentBench names games: split/task/trial
            task_id = "/".join(os.path.abspath(gamefile).split(os.sep)[-4:-1])
            with open(gamefile, encoding="utf-8") as f:
                goal = GOAL_RE.search(json.load(f).get("grammar", ""))
            if goal is None:
                raise DataError(gamefile, "no 'Your task is to: ...' in the game's grammar",
                                "is this an ALFWorld game.tw-pddl file?")
            tasks.append(Task(id=task_id, prompt=goal.group(1),
                              data={"gamefile": os.path.abspath(gamefile), "example": example_for(task_id)}))
        return tasks

    def reset(self, task):
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

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
        """("act", command) for a reply with "ACTION: <command>", else None (invalid format)."""
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
        parsed = self.parse_action(reply)
        if parsed is None:
            return Step("", done=True, finish="invalid_format",
                        info={"valid_format": False, "valid_action": False, "action": ""})
        command = to_engine_command(parsed[1])
        valid = command in self.state["admissible_commands"]
        info = {"valid_format": True, "valid_action": valid, "action": to_agent_command(command)}
        if valid:
            self.follow(command)
        # an inadmissible command goes to the engine too: it answers "Nothing happens." and
        # leaves the game as it was
        self.state, _, _ = self.game.step(command)
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
