"""The explorer: an honest offline teacher that searches, instead of replaying a solution.

The expert agent replays each task's reference solution (ALFWorld: the game's walkthrough), so it
walks straight to where an object is hidden and never shows a search, a wrong guess or a
recovery. The explorer sees only what a model sees: the conversation (the task and every
observation so far). Each reply is a pure function of those messages and a seed, so it is
deterministic, thread safe, and the same whether the env runs in this process or another:

    agent = ExplorerAgent(seed=0)          # make_agent("explorer"); other seeds, other search orders
    reply = agent.reply(messages, env)     # reads env.name (which policy), never env state;
                                           # DB/OS: also the task's reference solution (below)

ALFWorld: search the receptacles the room description lists, the likeliest places for the object
first (common household sense, no per-game knowledge), open the closed ones, take the object when
it shows up, heat/cool/clean it at the microwave/fridge/sinkbasin, find a desklamp, put it where
the task says; remember what was seen on the way; after "Nothing happens." try the next option.
Its thoughts say what the last observation showed and why the next action follows.

DB and OS: there is no offline model to write the solution, so the explorer builds on the task's
reference solution (the one thing it reads of the env besides its name: env.gold_statements() /
env.example_script(), task data, never the episode's state) and does what the replay expert
skips: it looks before it acts, writes its thoughts from the real observations, and checks or
repairs what it did.
- DB: first a look at the table (a few rows, the row count, or its columns: the seed picks which,
  per task), then the reference SQL; when the database answers with an error, the thought quotes
  it and the next query fixes it from the error and the table's real names (glued keywords,
  backslash-escaped quotes, an unquoted multi-word column, a wrong table or column name); after a
  change, a SELECT shows the changed rows; the answer is what the last query returned.
- OS: first `ls -l` on the paths the task names (then `head`/`wc -l` on a file), or the first
  command of the reference pipeline cut to a few lines; then the reference commands; then a check
  (a count's pipeline listed without its `wc -l`, or a command the task quotes tried out), then the
  answer, or finish when there is nothing to report.
"""
import ast
import difflib
import itertools
import json
import random
import re
import zlib

from agentune.agents import Agent, Reply
from agentune.envs.base import NoReference
from agentune.envs.db_env import MODIFICATION_TYPES, one_line


class ExplorerAgent(Agent):
    kind = "explorer"

    def __init__(self, seed=0, temperature=0.0, top_p=1.0, max_tokens=512):
        # the sampling options of 01_collect.py mean nothing here (the policy is not a model)
        self.seed = int(seed)
        self.model = f"explorer-seed{self.seed}"

    def reply(self, messages, env):
        policy = POLICIES.get(env.name)
        if policy is None:  # SystemExit, not an episode failure: the run stops here, it can't work
            raise SystemExit(f"the explorer has no policy for {env.name!r} (it has: {', '.join(POLICIES)}); "
                             f"collect {env.name} with --agent=expert, or pick --env={','.join(POLICIES)}")
        if env.name in REFERENCE:
            return Reply(policy(messages, self.seed, REFERENCE[env.name](env)))
        return Reply(policy(messages, self.seed))

    def describe(self):
        return {"kind": self.kind, "model": self.model, "sampling": {"seed": self.seed}}


# ---------------------------------------------------------------------------------------------
# ALFWorld

ALF_GOALS = [  # the six task types' goal wordings (ALFWorld's templates) -> (kind, object, place)
    (re.compile(r"^(?:put two|find two) (\w+) (?:and put them )?in (\w+)$"), "two"),
    (re.compile(r"^put a (clean|hot|cool) (\w+) in (\w+)$"), "state"),
    (re.compile(r"^(clean|heat|cool) some (\w+) and put it in (\w+)$"), "verb"),
    (re.compile(r"^put (?:a|some) (\w+) (?:in|on) (\w+)$"), "put"),
    (re.compile(r"^(?:look at|examine the) (\w+) (?:under|with) the (\w+)$"), "look"),
]
TREATMENT = {"clean": "clean", "hot": "heat", "cool": "cool", "heat": "heat"}
# where each treatment is done (in order of preference) and the object's state afterwards
APPLIANCES = {"heat": ("microwave",), "cool": ("fridge",), "clean": ("sinkbasin", "bathtubbasin")}
DONE_WORD = {"heat": "hot", "cool": "cool", "clean": "clean"}

# Common household sense: where an object of a kind is usually found, likeliest first. Places not
# listed come after, open surfaces before closed containers (a closed one costs a turn to open).
# The one fridge and microwave come before the many cabinets and drawers of a kitchen.
FOOD = ["fridge", "countertop", "diningtable", "sinkbasin", "microwave", "garbagecan", "cabinet"]
DISHES = ["countertop", "diningtable", "sinkbasin", "fridge", "microwave", "shelf", "cabinet"]
CUTLERY = ["countertop", "diningtable", "sinkbasin", "drawer", "cabinet"]
CONDIMENTS = ["countertop", "diningtable", "shelf", "cabinet", "drawer"]
BATHROOM = ["toilet", "countertop", "cabinet", "shelf", "sinkbasin", "bathtubbasin", "garbagecan"]
SMALL_THINGS = ["sidetable", "desk", "dresser", "coffeetable", "diningtable", "countertop", "shelf",
                "drawer", "cabinet", "armchair", "sofa", "bed", "ottoman", "safe", "garbagecan"]
LIKELY_PLACES = {
    **dict.fromkeys(["apple", "tomato", "potato", "egg", "lettuce", "bread"], FOOD),
    **dict.fromkeys(["mug", "cup"], ["coffeemachine", "countertop", "diningtable", "sinkbasin",
                                     "microwave", "fridge", "shelf", "cabinet"]),
    **dict.fromkeys(["bowl", "plate"], DISHES),
    **dict.fromkeys(["pan", "pot", "kettle"], ["stoveburner", "countertop", "diningtable", "sinkbasin",
                                               "fridge", "cabinet"]),
    **dict.fromkeys(["knife", "butterknife", "fork", "spoon", "spatula", "ladle"], CUTLERY),
    **dict.fromkeys(["saltshaker", "peppershaker", "winebottle", "glassbottle"], CONDIMENTS),
    "dishsponge": ["sinkbasin", "countertop", "diningtable", "cabinet", "drawer"],
    **dict.fromkeys(["soapbar", "soapbottle", "spraybottle", "candle"], BATHROOM),
    "toiletpaper": ["toiletpaperhanger", "toilet", "countertop", "cabinet", "drawer", "shelf", "garbagecan"],
    **dict.fromkeys(["cloth", "handtowel", "towel"], ["handtowelholder", "towelholder", "countertop",
                                                      "sinkbasin", "bathtubbasin", "toilet", "cabinet"]),
    "tissuebox": ["toilet", "countertop", "sidetable", "dresser", "desk", "coffeetable", "shelf", "cabinet"],
    "pillow": ["bed", "sofa", "armchair", "ottoman"],
    "laptop": ["desk", "bed", "sofa", "diningtable", "coffeetable", "sidetable"],
    "remotecontrol": ["coffeetable", "sofa", "armchair", "sidetable", "dresser"],
    **dict.fromkeys(["cellphone", "keychain", "creditcard", "cd", "pen", "pencil", "watch", "alarmclock",
                     "book", "newspaper", "statue", "vase", "box", "desklamp"], SMALL_THINGS),
}
OPEN_SURFACES = ["countertop", "diningtable", "desk", "sidetable", "dresser", "coffeetable", "shelf",
                 "stoveburner", "coffeemachine", "sinkbasin", "bathtubbasin", "toilet", "bed", "sofa",
                 "armchair", "ottoman", "cart", "toaster", "garbagecan", "handtowelholder", "towelholder",
                 "toiletpaperhanger"]

ROOM_RE = re.compile(r"Looking quickly around you, you see (.*?)\.\s*\n")
TASK_RE = re.compile(r"Your task is to: (.*)")
ACTION_RE = re.compile(r"ACTION:(.*)")
SEEN_RE = re.compile(r"(?:On the ([\w ]+?), you see|The ([\w ]+?) is open\. In it, you see) (.*?)\.(?:\s|$)")
CLOSED_RE = re.compile(r"The ([\w ]+?) is closed\.")
NOTHING = "Nothing happens."
DONE_RE = re.compile(r"You (pick up|put|heat|cool|clean|turn on) (.*?)\.?$")
PAST = {"pick up": "picked up", "put": "put", "heat": "heated", "cool": "cooled", "clean": "cleaned",
        "turn on": "turned on"}


def kind_of(name):
    """'cabinet 12' -> 'cabinet'."""
    return name.rsplit(" ", 1)[0]


def parse_list(text):
    """'a cloth 1, a soapbar 1, and a soapbottle 1' -> ['cloth 1', 'soapbar 1', 'soapbottle 1']."""
    if text.strip() == "nothing":
        return []
    items = re.split(r",\s*(?:and\s+)?|\s+and\s+", text)
    return [re.sub(r"^(?:a|an)\s+", "", item.strip()) for item in items if item.strip()]


def with_article(name):
    return ("an " if name[0] in "aeiou" else "a ") + name


def listing(names, conjunction="and"):
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + f" {conjunction} " + names[-1]


def parse_goal(goal):
    """(kind, object type, target type): kind is put, two, look, heat, cool or clean."""
    goal = goal.strip().rstrip(".")
    for pattern, form in ALF_GOALS:
        match = pattern.match(goal)
        if match is None:
            continue
        if form == "two":
            return "two", match.group(1), match.group(2)
        if form in ("state", "verb"):
            return TREATMENT[match.group(1)], match.group(2), match.group(3)
        return form, match.group(1), match.group(2)
    raise ValueError(f"the explorer does not understand the ALFWorld goal {goal!r}")


class Room:
    """What the agent knows after the conversation so far, rebuilt from the messages each turn."""

    def __init__(self, messages):
        start = max(i for i, m in enumerate(messages)
                    if m["role"] == "user" and TASK_RE.search(m["content"]))
        intro = messages[start]["content"]
        room = ROOM_RE.search(intro + "\n")
        self.receptacles = parse_list(room.group(1)) if room else []
        self.goal = TASK_RE.search(intro).group(1).strip()
        self.kind, self.object, self.target = parse_goal(self.goal)
        self.task_text = self.goal + " in a room with " + ", ".join(self.receptacles)
        self.at = None               # the receptacle the agent stands at
        self.contents = {}           # receptacle -> objects seen in/on it (as last seen)
        self.prep = {}               # receptacle -> "on" (a surface) or "in" (a container)
        self.closed = set()          # receptacles seen closed (and not opened since)
        self.holding = None
        self.treated = set()         # objects heated/cooled/cleaned
        self.placed = []             # objects put where the task wants them, and where
        self.lamp_on = False
        self.failed = set()          # (action, place, holding) that answered "Nothing happens."
        self.actions = []
        self.last = ""               # the last observation
        turns = messages[start + 1:]
        for reply, observation in zip(turns[0::2], turns[1::2]):
            match = ACTION_RE.search(reply["content"])
            action = " ".join(match.group(1).lower().split()).rstrip(".") if match else ""
            self.update(action, observation["content"])

    def update(self, action, observation):
        self.actions.append(action)
        self.last = observation
        if NOTHING in observation:
            self.failed.add((action, self.at, self.holding))
            return
        verb = action.split(" ")[0]
        if verb == "go":
            self.at = action.removeprefix("go to ")
        elif verb == "open":
            self.at = action.removeprefix("open ")
            self.closed.discard(self.at)
        elif verb == "take":
            obj, place = action.removeprefix("take ").split(" from ", 1)
            self.holding = obj
            self.contents[place] = [o for o in self.contents.get(place, []) if o != obj]
        elif verb == "put":
            obj, place = action.removeprefix("put ").split(" in/on ", 1)
            self.holding = None
            self.placed.append((obj, place))
            self.contents.setdefault(place, []).append(obj)
        elif verb in APPLIANCES:
            self.treated.add(action.split(" with ")[0].removeprefix(verb + " "))
        elif verb == "use" and kind_of(action.removeprefix("use ")) == self.target:
            self.lamp_on = True
        for name, open_name, items in SEEN_RE.findall(observation):
            place = name or open_name
            self.at = place  # (two receptacles can share a spot: "go to" may show the other one)
            self.contents[place] = parse_list(items)
            self.prep[place] = "on" if name else "in"
            self.closed.discard(place)
        for place in CLOSED_RE.findall(observation):
            self.closed.add(place)
            self.at = place

    def where(self, place):
        return f"{self.prep.get(place, 'at')} the {place}"

    def sightings(self, kind, exclude=()):
        """(object, place) of every object of this kind seen and still there, in order seen."""
        return [(o, place) for place, objects in self.contents.items() for o in objects
                if kind_of(o) == kind and o not in exclude]

    def unexplored(self, kind, rng):
        """Receptacles not looked into yet, likeliest first for an object of this kind."""
        likely = LIKELY_PLACES.get(kind, SMALL_THINGS)

        def rank(place):
            k = kind_of(place)
            if k in likely:
                base = likely.index(k)
            else:
                base = len(likely) + (0 if k in OPEN_SURFACES else 1)
            return base + rng.jitter(place)
        todo = [r for r in self.receptacles if r not in self.contents]
        return sorted(todo, key=lambda r: (rank(r), rng.order(r)))


def seeded(seed, *parts):
    """A number in [0, 1) fixed by the seed and the parts (the task, a name): the same at every
    turn of an episode and in every process, different for another seed."""
    return random.Random(zlib.crc32(":".join(map(str, (seed, *parts))).encode())).random()


def seeded_choice(options, seed, *parts):
    return options[int(seeded(seed, *parts) * len(options))]


JITTER = 2.0   # seeds other than 0: how far (in ranks of likelihood) a kind of place may move up the order


class Shuffle:
    """The seed's say in the search: seed 0 searches in the plain order (likeliest kind first,
    lowest number first); other seeds shuffle places of a kind and let neighbouring kinds swap
    (a kind moves as a block: the one fridge never ends up behind twenty cabinets)."""

    def __init__(self, seed, task_text):
        self.seed, self.task_text = seed, task_text

    def _key(self, name):
        """A number in [0, 1) for a place or a kind, the same at every turn of the episode."""
        return seeded(self.seed, self.task_text, name)

    def jitter(self, place):
        return 0.0 if self.seed == 0 else JITTER * self._key(kind_of(place))

    def order(self, place):
        if self.seed == 0:
            number = place.rsplit(" ", 1)[-1]
            return int(number) if number.isdigit() else 0
        return self._key(place)


def describe_last(room):
    """One sentence about the last observation, from the agent's point of view."""
    obs, action = room.last, room.actions[-1] if room.actions else ""
    if not obs:
        return ""
    if NOTHING in obs:
        return f"Nothing happened: \"{action}\" did not work here."
    seen = SEEN_RE.search(obs)
    if seen:
        place = seen.group(1) or seen.group(2)
        objects = parse_list(seen.group(3))
        where = f"{'On' if seen.group(1) else 'In'} the {place}"
        wanted_place = action.removeprefix("go to ") if action.startswith("go to ") else place
        if wanted_place != place:  # (it shares a spot with where I stood: "go to" it is not a move)
            where = f"I did not get to the {wanted_place} but to the {place}. {where}"
        if not objects:
            return f"{where} there is nothing."
        if len(objects) <= 5:
            return f"{where} I see {listing([with_article(o) for o in objects])}."
        wanted = [o for o in objects if kind_of(o) in (room.object, room.target)] or objects[:3]
        return f"{where} I see {len(objects)} things, among them {listing([with_article(o) for o in wanted])}."
    done = DONE_RE.search(obs)
    if done:
        return f"I {PAST[done.group(1)]} {done.group(2)}."
    if CLOSED_RE.search(obs):
        return ""
    return obs.strip().split("\n")[0]


def candidates(room, rng):
    """(thought, action) in order of preference for the next turn."""
    obj, target = room.object, room.target
    holding, at = room.holding, room.at
    last_seen = SEEN_RE.search(room.last)
    if last_seen and not any(kind_of(o) == obj for o in parse_list(last_seen.group(3))):
        not_here = f"No {obj} there. "
    else:
        not_here = ""

    # a closed receptacle in front of us that we want to look into (or put into)
    if at in room.closed and not holding and at not in room.contents:
        yield f"The {at} is closed. I open it to see what is inside.", f"open {at}"

    if holding:
        verb = room.kind if room.kind in APPLIANCES else None
        if verb and holding not in room.treated:
            places = [r for k in APPLIANCES[verb] for r in room.receptacles if kind_of(r) == k]
            for place in places:
                if at == place:
                    yield f"I am at the {place} with the {holding}. I {verb} it here.", f"{verb} {holding} with {place}"
                else:
                    yield (f"I have the {holding}. Before putting it in the {target}, I need to {verb} it, "
                           f"so I take it to the {place}.", f"go to {place}")
            return
        if room.kind == "look":
            lamps = room.sightings(target)
            for lamp, place in lamps:
                if at == place and not room.lamp_on:
                    yield (f"The {lamp} is here and I hold the {holding}. I turn the lamp on to look at "
                           f"the {holding} under its light.", f"use {lamp}")
                else:
                    yield (f"I have the {holding}. I saw {with_article(lamp)} {room.where(place)}, "
                           f"so I go there to look at it under the lamp.", f"go to {place}")
            for place in room.unexplored(target, rng):
                yield (f"I have the {holding}. Now I need {with_article(target)}, which usually stands on "
                       f"a desk, sidetable or dresser. Let me check the {place}.", f"go to {place}")
            return
        state = f"{DONE_WORD[room.kind]} " if room.kind in DONE_WORD else ""
        goals = [r for r in room.receptacles if kind_of(r) == target]
        placed_in = [place for _, place in room.placed]
        goals.sort(key=lambda r: (r not in placed_in, r != at, r in room.closed, rng.order(r)))
        for place in goals:
            if at == place:
                if place in room.closed:
                    yield f"The {place} is closed. I open it to put the {holding} in it.", f"open {place}"
                yield (f"I am at the {place} with the {state}{holding}. I put it here, as the task asks.",
                       f"put {holding} in/on {place}")
                yield f"I try opening the {place} first.", f"open {place}"
            else:
                yield (f"I have the {state}{holding}. Now I take it to the {place}.", f"go to {place}")
        return

    # not holding anything: find an object of the kind the task wants
    placed = [o for o, _ in room.placed]
    found = room.sightings(obj, exclude=placed)
    if room.kind == "two" and placed:
        first = f"One {obj} ({placed[0]}) is already in the {room.placed[0][1]}. I need a second one. "
    else:
        first = ""
    found.sort(key=lambda seen: seen[1] != at)
    for o, place in found:
        if at == place:
            yield f"{first}There is the {obj} I am looking for: I take the {o}.", f"take {o} from {place}"
        else:
            yield f"{first}I saw {with_article(o)} {room.where(place)} earlier, so I go back there to take it.", f"go to {place}"
    todo = room.unexplored(obj, rng)
    for place in todo:
        if not room.actions:
            plan = {"heat": f"heat it with a microwave, then put it in a {target}",
                    "cool": f"cool it with a fridge, then put it in a {target}",
                    "clean": f"clean it in a sinkbasin, then put it in a {target}",
                    "look": f"look at it under a {target}",
                    "two": f"put it in a {target}, then find a second one and put it there too",
                    "put": f"put it in/on a {target}"}[room.kind]
            likely = [k for k in LIKELY_PLACES.get(obj, SMALL_THINGS)
                      if any(kind_of(r) == k for r in room.receptacles)][:3]
            where = f" {with_article(obj).capitalize()} is most likely at a {listing(likely, 'or')}," if likely else ""
            yield (f"The task is to {room.goal.rstrip('.')}. First I need to find {with_article(obj)}, then "
                   f"{plan}.{where} so I start with the {place}.", f"go to {place}")
        else:
            yield f"{first}{not_here}Next I check the {place}.", f"go to {place}"


def alfworld_reply(messages, seed=0):
    room = Room(messages)
    rng = Shuffle(seed, room.task_text)
    recent = room.actions[-2:]
    fallbacks = [("I have run out of ideas here. Let me look around again.", "look"),
                 ("Let me check what I am carrying.", "inventory")]
    for thought, action in itertools.chain(candidates(room, rng), fallbacks):
        if (action, room.at, room.holding) in room.failed:
            continue
        if len(recent) == 2 and all(a == action for a in recent):
            continue  # the same output a third time in a row ends an AgentBench episode
        lead = describe_last(room)
        if lead and not thought.startswith(("The task is", "The " + str(room.at) + " is closed")):
            thought = f"{lead} {thought}"
        return f"THOUGHT: {thought}\nACTION: {action}"
    return f"THOUGHT: {describe_last(room)} I am stuck. Let me look around.\nACTION: look"


# ---------------------------------------------------------------------------------------------
# Both DB and OS: an episode is a generator that yields each reply and is sent each observation.
# Every turn replays it from the start over the observations so far (deterministic: the same
# replies come out), so the explorer keeps no state between turns.

def replay(episode, observations):
    """The reply after these observations of the episode generator."""
    reply = next(episode)
    for observation in observations:
        try:
            reply = episode.send(observation)
        except StopIteration:
            raise ValueError("the explorer's episode is over (it answered) but the conversation "
                             "goes on: the messages are not from one of its episodes") from None
    return reply


def cut(text, width):
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def ending(text):
    """text as the end of a sentence: a full stop unless it ends with one already (or '...')."""
    return text if text.endswith((".", "!", "?")) else text + "."


# ---------------------------------------------------------------------------------------------
# DBBench

DB_TABLE_RE = re.compile(r"The name of this table is (.+?), and the headers of this table are (.*?)\.?\s*$", re.S)
# AgentBench's SQL as tokens: strings (with '' or \' inside), quoted names (`x`, "x", [x]),
# words, blanks, single characters. An unclosed quote runs to the end (the SQL is broken anyway)
SQL_TOKEN_RE = re.compile(r"""'(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?"""
                          r"""|\s+|\w+|.""", re.S)
# a keyword run into the name before it ("AverageFROM", "DESCLIMIT"): seen in the gold SQL
GLUED_RE = re.compile(r"^(.*[a-z0-9_]|DESC|ASC)(FROM|WHERE|LIMIT|ORDER|GROUP|HAVING)$")
PLAIN_NAME_RE = re.compile(r"^[A-Za-z_]\w*$")
NO_COLUMN_RE = re.compile(r"no such column: (\S+)|Unknown column '([^']+)'")
# where a syntax error is: SQLite's near "X": syntax error, MySQL's ... near 'X...' at line 1
NEAR_RE = re.compile(r'near "(.*?)": syntax error|near \'(.*)\' at line \d+', re.S)
REPLY_CHARS = 290      # AgentBench's 128 tokens a reply, in characters (about 2.9 a token here)
MAX_REPAIRS = 6        # fixes tried on one statement before giving up (a round is left to answer)
# how the explorer first looks at the table: the seed picks one per task
DB_LOOKS = ("rows3", "rows5", "count", "columns")


def quote_name(name):
    """A table or column name as MySQL quotes it (SQLite reads backticks too)."""
    return "`" + name.replace("`", "``") + "`"


def sql_name(token):
    """The name a token stands for, if it is a name: `x`, "x", [x] or a bare word."""
    if len(token) >= 2 and token[0] + token[-1] in ("``", '""', "[]"):
        return token[1:-1].replace(token[0] * 2, token[0]) if token[0] != "[" else token[1:-1]
    return token if re.fullmatch(r"\w+", token) else None


def is_string(token):
    return token.startswith("'")


def parse_rows(observation):
    """The rows an observation shows: (rows, cut), rows None when it is an error message. A result
    cut at 800 characters gives the rows before the cut; MySQL's Decimal('1.5') reads as '1.5'."""
    if not observation.startswith("["):
        return None, False
    text = re.sub(r"Decimal\('([^']*)'\)", r"'\1'", observation)
    cut_off = text.endswith("[TRUNCATED]")
    text = text.removesuffix("[TRUNCATED]")
    if not cut_off:
        try:
            return [tuple(row) for row in ast.literal_eval(text)], False
        except (ValueError, SyntaxError, TypeError):
            pass
    for end in reversed([i for i, c in enumerate(text) if c == ")"]):  # the last whole row
        try:
            return [tuple(row) for row in ast.literal_eval(text[:end + 1] + "]")], True
        except (ValueError, SyntaxError, TypeError):
            continue
    return [], True


class DBTask:
    """What the agent sees of a DBBench task: the question, the table's name and headers, and the
    observations so far."""

    def __init__(self, messages):
        start = next((i for i, m in enumerate(messages)
                      if m["role"] == "user" and DB_TABLE_RE.search(m["content"])), None)
        if start is None:
            raise ValueError("no DBBench task in the conversation (no 'The name of this table is ...')")
        prompt = messages[start]["content"]
        found = DB_TABLE_RE.search(prompt)
        self.question = prompt[:found.start()].strip()
        self.table, self.headers = found.group(1), found.group(2).split(",")
        self.observations = [m["content"] for m in messages[start + 2::2]]


def db_reply(messages, seed, gold):
    task = DBTask(messages)
    return replay(db_episode(task, seed, gold), task.observations)


def fitting(thoughts, body):
    """The first (richest) of the thoughts that fits one reply with body (the SQL, the answer):
    AgentBench cuts a reply at 128 tokens, about REPLY_CHARS characters here; else the last."""
    thoughts = [thoughts] if isinstance(thoughts, str) else thoughts
    return next((t for t in thoughts if len(t) + len(body) <= REPLY_CHARS), thoughts[-1])


def db_operation(thoughts, sql):
    return f"{fitting(thoughts, sql)}\nAction: Operation\n```sql\n{sql}\n```"


def db_answer(thoughts, values):
    answer = json.dumps(values, ensure_ascii=False)
    return f"{fitting(thoughts, answer)}\nAction: Answer\nFinal Answer: {answer}"


def listing_within(items, width, count_rest=True):
    """'a, b, c and 2 more' with as many items as fit in width characters (at least one)."""
    shown = []
    for item in items:
        if shown and len(", ".join(shown + [item])) > width:
            break
        shown.append(item)
    rest = len(items) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest and count_rest else "")


def first_row(rows, headers, width):
    """"Representative = 'Paul C. Daniels', Title = ... and 3 more" (the first row, named by the
    headers when they match it, within about width characters)."""
    row = rows[0]
    named = len(row) == len(headers)
    values = [repr(cut(v, 26) if isinstance(v, str) else v) for v in row]
    items = [f"{headers[i] or '(no name)'} = {v}" if named else v for i, v in enumerate(values)]
    return listing_within(items, width)


def needed_columns(sql, columns):
    """The table's columns the statement names (by name, quoted or not), in the table's order."""
    text = " ".join(t for t in SQL_TOKEN_RE.findall(sql) if not is_string(t)).lower()
    return [c for c in columns if c and c.lower() in text]


def db_episode(task, seed, gold):
    """The DB explorer's episode: a look at the table, the gold statements (repaired when they
    fail), a look at what a change did, the answer."""
    table = quote_name(task.table)
    statements = [one_line(s) for s in gold]
    if not statements:
        yield db_answer("I have no way to get this from the table, so I cannot answer.", [])
        return
    modifies = statements[0].split(None, 1)[0].upper() in MODIFICATION_TYPES
    look = seeded_choice(DB_LOOKS, seed, task.question)

    # 1. look at the table: its columns, or a few rows (after the row count)
    columns = task.headers        # the column names as far as we know (the prompt's, or observed)
    opening = f"The question is about the table {table}. Before writing the {'change' if modifies else 'query'}, "
    if look == "columns":
        observation = yield db_operation(opening + "I list its columns to get their exact names.",
                                         f"SHOW COLUMNS FROM {table}")
        listed, _ = parse_rows(observation)
        if listed is None:  # SHOW is MySQL's; SQLite lists the columns this way
            observation = yield db_operation(
                f"SHOW COLUMNS failed ({cut(error_gist(observation), 60)}), so this is not MySQL. "
                f"I list the columns with pragma_table_info instead.",
                f"SELECT name FROM pragma_table_info('{task.table.replace(chr(39), chr(39) * 2)}')")
            listed, _ = parse_rows(observation)
        if listed:
            columns = [str(row[0]) for row in listed]
            seen = [f"The table has {len(columns)} columns: {listing_within(columns, width)}."
                    for width in (150, 80, 30, 0)]
        else:
            seen = [f"Listing the columns failed ({cut(observation, 50)}), so I go by the headers I was given."]
    else:
        if look == "count":
            observation = yield db_operation(opening + "I check how many rows it has.",
                                             f"SELECT COUNT(*) FROM {table}")
            counted, _ = parse_rows(observation)
            count = f"The table has {counted[0][0]} rows." if counted else f"Counting failed ({cut(observation, 50)})."
            observation = yield db_operation(f"{count} Now a few of them, to see how the values are written.",
                                             f"SELECT * FROM {table} LIMIT 3")
        else:
            observation = yield db_operation(opening + "I look at a few rows to see how the values are written.",
                                             f"SELECT * FROM {table} LIMIT {look[-1]}")
        sample, _ = parse_rows(observation)
        if sample is None:
            seen = [f"Looking at the rows failed ({cut(observation, 60)})."]
        elif not sample:
            seen = ["The table is empty."]
        else:
            seen = [f"The first row: {first_row(sample, task.headers, width)}." for width in (150, 80, 30, 0)]

    # 2. the statements, each repaired until it runs
    for number, sql in enumerate(statements):
        if number == 0:
            action = {"INSERT": "I insert the new row.", "UPDATE": "I update the matching rows.",
                      "DELETE": "I delete the matching rows."}.get(sql.split(None, 1)[0].upper(),
                                                                   "Now I query what the question asks.")
            needed = needed_columns(sql, columns)
            uses = f" The columns I need, {', '.join(needed)}, are there." if needed else ""
            thoughts = [s + uses + " " + action for s in seen[:1]] + [s + " " + action for s in seen] + [action]
        else:
            thoughts = "That worked. Next statement."
        for attempt in range(MAX_REPAIRS + 1):
            observation = yield db_operation(thoughts, sql)
            result, cut_off = parse_rows(observation)
            if result is not None:
                break
            fix = repair_sql(sql, observation, task.table, columns)
            if fix is None or attempt == MAX_REPAIRS:
                yield db_answer(f"The statement failed ({cut(error_gist(observation), 80)}) and I see no fix, "
                                f"so I cannot answer.", ["none"] if modifies else [])
                return
            sql, why = fix
            thoughts = [f"The database says: {ending(cut(error_gist(observation), width))} {why}"
                        for width in (90, 40)] + [f"That failed. {why}"]

    # 3. after a change: look at the rows it touched, then answer
    if modifies:
        check = check_query(sql, table, task.headers)
        seen = "It ran without error."
        if check is not None:
            observation = yield db_operation(f"{seen} I check that the table now holds the change.", check)
            rows, _ = parse_rows(observation)
            if rows:
                seen = f"The {'row now reads' if len(rows) == 1 else f'{len(rows)} rows now read'}: " \
                       f"{first_row(rows, task.headers, 180)}."
            elif rows is not None:
                seen = "No row matches that any more."
            else:
                seen = f"The check failed ({cut(observation, 60)}), but the change itself ran."
        yield db_answer(seen + " The table is changed as asked.", ["none"])
        return
    # a query: the answer is what it returned, every value of every row; no rows or NULL is
    # "none", the data's word for no value (as the expert answers)
    values = ["none" if v is None else str(v) for row in result for v in row] or ["none"]
    if not result:
        thoughts = "The query returned no rows: there is no such value, so the answer is none."
    elif cut_off:
        thoughts = f"The result is cut off after {len(result)} rows; I answer with the rows I can see."
    else:
        thoughts = [f"The query returned {cut(repr(result), 120)}, so that is the answer.",
                    f"The query returned {len(result)} row{'s' * (len(result) > 1)}: that is the answer."]
    yield db_answer(thoughts, values)


def check_query(statement, table, headers):
    """A SELECT showing the rows a change touched: an UPDATE's or DELETE's WHERE, or an INSERT's
    first column = its value. None when there is nothing to select on."""
    tokens = SQL_TOKEN_RE.findall(statement.rstrip().rstrip(";"))
    upper = [t.upper() for t in tokens]
    if upper and upper[0] in ("UPDATE", "DELETE") and "WHERE" in upper:
        where = "".join(tokens[upper.index("WHERE") + 1:]).strip()
        return f"SELECT * FROM {table} WHERE {where}" if where else None
    if not upper or upper[0] != "INSERT" or "VALUES" not in upper:
        return None
    values_at = upper.index("VALUES")

    def group(start):  # the items of the parenthesised list from tokens[start:], split at top-level commas
        items, depth, item = [], 0, []
        for token in tokens[start:]:
            if token == "(":
                depth += 1
                if depth == 1:
                    continue
            elif token == ")":
                depth -= 1
                if depth == 0:
                    break
            if depth == 1 and token == ",":
                items.append("".join(item).strip())
                item = []
            elif depth >= 1:
                item.append(token)
        return items + ["".join(item).strip()]
    before = tokens[:values_at]
    names = [sql_name(n) for n in group(before.index("(")) if n] if "(" in before else headers
    values = group(values_at + 1)
    for name, value in zip(names, values):
        if name and value and value.upper() != "NULL":
            return f"SELECT * FROM {table} WHERE {quote_name(name)} = {value}"
    return None


# Repairs of a failed statement, from the error and the table's real names: each takes the SQL's
# tokens and returns (fixed tokens, one for each token; why) or None when it does not apply.
# repair_sql picks among them.

def fix_backslash_quotes(tokens, error, table, columns):
    bad = [t for t in tokens if is_string(t) and "\\'" in t]
    if not bad:
        return None
    fixed = [t.replace("\\'", "''") if is_string(t) else t for t in tokens]
    return fixed, f"The string {cut(bad[0], 40)} escapes a quote with a backslash; I double the quote instead ('')."


def fix_glued_keywords(tokens, error, table, columns):
    glued = [t for t in tokens if GLUED_RE.match(t) and t not in columns and t != table]
    if not glued:
        return None
    fixed = [" ".join(GLUED_RE.match(t).groups()) if t in glued else t for t in tokens]
    words = " and ".join(dict.fromkeys(glued))
    return fixed, f"{words} run{'s' * (len(set(glued)) == 1)} words together: I put the spaces in."


def fix_table_name(tokens, error, table, columns):
    """The name after FROM/INTO/UPDATE/JOIN must be the task's table, quoted as a name."""
    fixed, why = list(tokens), None
    for i, token in enumerate(tokens):
        if token.upper() not in ("FROM", "INTO", "UPDATE", "JOIN"):
            continue
        j = next((k for k in range(i + 1, len(tokens)) if not tokens[k].isspace()), None)
        if j is None or tokens[j] == quote_name(table):
            continue
        name = tokens[j][1:-1] if is_string(tokens[j]) else sql_name(tokens[j])
        if name is None:
            continue
        if name != table:
            fixed[j] = quote_name(table)
            why = f"There is no table {name}; the table is {quote_name(table)}."
        elif table.lower() in error.lower():  # near "table" (a keyword), or MySQL reads "T" and 'T' as strings
            fixed[j] = quote_name(table)
            why = f"The table's name {tokens[j]} must be quoted as a name: {quote_name(table)}."
    return None if why is None else (fixed, why)


def fix_unquoted_columns(tokens, error, table, columns):
    """A column name with spaces or signs written bare (Presentation of Credentials, W-L-T)."""
    for column in sorted((c for c in columns if c and not PLAIN_NAME_RE.match(c)), key=len, reverse=True):
        for i in range(len(tokens)):
            if is_string(tokens[i]) or sql_name(tokens[i]) != tokens[i]:
                continue
            text, j = "", i
            while j < len(tokens) and len(text) < len(column) and not is_string(tokens[j]):
                text += tokens[j]
                j += 1
            if text == column and j > i + 1:
                fixed = tokens[:i] + [quote_name(column)] + [""] * (j - i - 1) + tokens[j:]
                return fixed, f"{column} is one column name: I quote it."
    return None


def fix_unknown_column(tokens, error, table, columns):
    """'no such column: X': the table's column closest to X."""
    found = NO_COLUMN_RE.search(error)
    if not found:
        return None
    wrong = (found.group(1) or found.group(2)).strip('"`')
    if any(wrong.lower() == c.lower() for c in columns):
        return None
    candidates = [c for c in columns if c.lower().startswith(wrong.lower())] or \
        difflib.get_close_matches(wrong, columns, n=1, cutoff=0.6)
    if not candidates:
        return None
    right = candidates[0]
    fixed = [quote_name(right) if not is_string(t) and sql_name(t) == wrong else t for t in tokens]
    if fixed == tokens:
        return None
    return fixed, f"There is no column {wrong}; the closest column is {quote_name(right)}."


def error_gist(error):
    """An error as a thought quotes it: MySQL's long syntax message cut to where it is."""
    near = NEAR_RE.search(error)
    if error.startswith("1064") and near:
        return f"a syntax error near '{cut(near.group(2), 40)}'"
    return error


def error_position(sql, tokens, error):
    """Where in the SQL a syntax error is (a character offset), or None when it does not say."""
    near = NEAR_RE.search(error)
    if near is None:
        return None
    if near.group(1) is not None:  # SQLite names the token
        offset = 0
        for token in tokens:
            if token == near.group(1):
                return offset
            offset += len(token)
        return None
    excerpt = near.group(2).removesuffix("...")[:20]   # MySQL quotes the SQL from there on
    if not excerpt:
        return len(sql)                                   # near '': at the end
    return sql.find(excerpt) if excerpt in sql else None


def repair_sql(sql, error, table, columns):
    """(fixed sql, why) for a statement that failed with this error, or None. Of the fixes that
    apply, the one that changes the SQL closest to where the error is; then by the kind of error
    (a table error: the table's name; a column error: column names; else how it is written)."""
    lowered = error.lower()
    if "table" in lowered and ("no such" in lowered or "doesn't exist" in lowered):
        order = (fix_table_name, fix_glued_keywords)
    elif NO_COLUMN_RE.search(error):
        order = (fix_glued_keywords, fix_unquoted_columns, fix_unknown_column)
    else:
        order = (fix_backslash_quotes, fix_glued_keywords, fix_table_name, fix_unquoted_columns)
    order += tuple(f for f in (fix_backslash_quotes, fix_glued_keywords, fix_table_name,
                               fix_unquoted_columns, fix_unknown_column) if f not in order)
    tokens = SQL_TOKEN_RE.findall(sql)
    offsets = [0] + list(itertools.accumulate(len(t) for t in tokens[:-1]))   # where each token starts
    at = error_position(sql, tokens, error)
    candidates = []
    for rank, fix in enumerate(order):
        fixed = fix(tokens, error, table, columns)
        if fixed is None or "".join(fixed[0]) == sql:
            continue
        changed = [offsets[k] for k in range(len(tokens)) if fixed[0][k] != tokens[k]]
        distance = 0 if at is None else min(abs(c - at) for c in changed)
        candidates.append((distance, rank, "".join(fixed[0]), fixed[1]))
    if not candidates:
        return None
    _, _, fixed_sql, why = min(candidates)
    return fixed_sql, why


# ---------------------------------------------------------------------------------------------
# OS interaction

OS_TASK_MARK = "Now, I will start a new problem in a new OS. My problem is:\n\n"
OS_OUTPUT = "The output of the OS:\n\n"   # (else "The output of the OS is empty.")
OS_TRUNCATED = "\n[truncated because the output is too long]"
# the paths a task names: /usr/stock.log, /home, ~/test (not the "/ 3" of "9 / 3")
PATH_RE = re.compile(r"(?<![\w/~.])(~?/[A-Za-z0-9._-][\w.-]*(?:/[\w.-]+)*)")
# first commands of a pipeline that only read: worth running alone, cut to a few lines, first
READ_ONLY = {"ls", "cat", "getent", "find", "grep", "ps", "who", "du", "df", "awk", "cut", "sort",
             "head", "tail", "stat", "wc"}
COUNT_RE = re.compile(r"\s*\|\s*wc -l\s*$")
QUOTED_RE = re.compile(r'"([^"\n]+)"')
# an output that says the command failed
FAILED_RE = re.compile(r"No such file or directory|command not found|Permission denied|cannot access|"
                       r"syntax error|Traceback \(most recent call last\)")


def os_output(observation):
    """(the command's output, whether it was cut) from the env's observation text."""
    if observation.startswith(OS_OUTPUT):
        text = observation[len(OS_OUTPUT):]
        return text.removesuffix(OS_TRUNCATED), text.endswith(OS_TRUNCATED)
    return "", False   # "The output of the OS is empty."


def os_bash(thoughts, command):
    return f"Think: {fitting(thoughts, command)}\n\nAct: bash\n\n```bash\n{command}\n```"


def os_reply(messages, seed, example):
    start = max((i for i, m in enumerate(messages) if m["role"] == "user" and OS_TASK_MARK in m["content"]),
                default=None)
    if start is None:
        raise ValueError("no OS task in the conversation (no 'Now, I will start a new problem ...')")
    description = messages[start]["content"].split(OS_TASK_MARK, 1)[1].strip()
    observations = [m["content"] for m in messages[start + 2::2]]
    return replay(os_episode(description, seed, example), observations)


def describe_listing(path, output):
    """One sentence about `ls -l PATH`: (sentence, the path is a regular file)."""
    if "No such file or directory" in output or not output.strip():
        return f"There is no {path}.", False
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("total ")]
    entries = []
    for line in lines:
        fields = line.split(None, 8)
        if len(fields) == 9 and fields[8] not in (".", ".."):
            entries.append((line[0], fields[4], fields[8]))
    if len(entries) == 1 and entries[0][2] == path and entries[0][0] == "-":
        return f"{path} is a file of {entries[0][1]} bytes.", True
    if not entries:
        return f"{path} is empty.", False
    names = [name + "/" * (kind == "d") for kind, _, name in entries]
    entries_word = "entry" if len(entries) == 1 else "entries"
    return f"In {path} I see {len(entries)} {entries_word}: {listing_within(names, 90)}.", False


def some_lines(output, width=90, whole=True):
    """"'a', 'b' and 3 more": lines of an output (not whole: it was cut, so no count of the rest)."""
    lines = [repr(cut(line.strip(), 40)) for line in output.splitlines() if line.strip()]
    return listing_within(lines, width, count_rest=whole)


def os_episode(description, seed, example):
    """The OS explorer's episode: a look at what the task names, the reference commands, a check
    of their result, the answer (or finish)."""
    if example is None:  # as the expert: nothing to build on (SystemExit would stop the run)
        raise NoReference("this OS task has no example solution for the explorer to build on")
    language, code = example
    command = code.strip() if language == "bash" else f"python3 - <<'EOF'\n{code.strip()}\nEOF"

    # 1. look: the paths the task names (a file: what is in it), else what the reference pipeline
    # starts from, cut to a few lines
    lead = ""
    paths = list(dict.fromkeys(p.rstrip(".,") for p in PATH_RE.findall(description)))[:2]
    for path in paths:
        ls = seeded_choice(("ls -la", "ls -lA", "ls -al"), seed, description, "ls")  # hidden files too
        opening = f"{lead} Next I look at {path}." if lead else \
            f"The task is about {path}. Before doing anything, I look at what is there."
        output, _ = os_output((yield os_bash(opening, f"{ls} {path}")))
        lead, is_file = describe_listing(path, output)
        if is_file:
            look = seeded_choice(("head -n 5", "head -n 3", "wc -l"), seed, description, "file")
            output, _ = os_output((yield os_bash(f"{lead} Let me see what is in it.", f"{look} {path}")))
            if look == "wc -l":
                lead = f"It has {output.split()[0] if output.split() else 'no'} lines."
            else:
                lead = f"It starts with {some_lines(output)}." if output.strip() else "It is empty."
    stages = command.split("|")
    first = stages[0].strip()
    if not paths and "\n" not in command and len(stages) > 1 and first.split()[0] in READ_ONLY \
            and not re.search(r"[<>;&`$]", first):
        output, _ = os_output((yield os_bash(f"The answer comes from what `{first}` prints. "
                                             f"First I look at a few of its lines.", f"{first} | head -n 5")))
        lead = [f"`{first}` prints lines like {some_lines(output, width)}." for width in (90, 30)] \
            if output.strip() else f"`{first}` prints nothing."

    # 2. act
    counting = COUNT_RE.search(command) is not None and "\n" not in command.strip()
    act = "Now I count with this pipeline." if counting else "Now I run the commands for the task."
    leads = [lead] if isinstance(lead, str) else lead
    output, truncated = os_output((yield os_bash([f"{seen} {act}".strip() for seen in leads] + [act], command)))
    answer = output.strip().replace("\n", " ")   # an answer must fit on the Act line

    # 3. check, then answer (or finish, when the commands printed nothing)
    if not answer:
        tried = next((q for q in QUOTED_RE.findall(description)
                      if len(q.split()) > 1 and re.search(rf"\b{re.escape(q.split()[0])}\b", command)), None)
        if tried is None:
            yield "Think: The commands ran without output or error, so the task is done.\n\nAct: finish"
            return
        name, arguments = tried.split(None, 1)
        check = f"{name} '{arguments}'" if re.search(r"[*()?\[\]$&|;<>]", arguments) else tried
        output, _ = os_output((yield os_bash(
            f"The commands ran without output or error. To check, I try the task's example: {check}", check)))
        if output.strip() and not FAILED_RE.search(output):
            yield f"Think: It printed {cut(output.strip(), 60)}, so `{name}` works as asked.\n\nAct: finish"
        else:
            printed = f"It printed {cut(output.strip(), 60)}" if output.strip() else "It printed nothing"
            yield f"Think: {printed}, which is not what the task wants, and I see no fix.\n\nAct: finish"
        return
    if counting and re.fullmatch(r"\d+", answer):
        listing = COUNT_RE.sub("", command)
        output, cut_off = os_output((yield os_bash(
            [f"The count is {answer}. To check it, I list what was counted.", "I list what was counted."], listing)))
        lines = [line for line in output.splitlines() if line.strip()]
        if cut_off:
            seen = f"The list is too long to show whole; it starts with {some_lines(output, 60, whole=False)}."
        elif not lines and answer == "0":
            seen = "The list is empty too."
        elif len(lines) == int(answer):
            seen = f"The list has the same {answer} entr{'y' if answer == '1' else 'ies'}: {some_lines(output, 80)}."
        else:
            seen = f"The list shows {len(lines)} lines where the count said {answer}; I keep the count, " \
                   f"which is what the task asks for."
        yield f"Think: {seen} The answer is {answer}.\n\nAct: answer({answer})"
        return
    if FAILED_RE.search(output):
        yield (f"Think: The command failed: {cut(output.strip(), 80)}. I see no way around it, so I "
               f"cannot do this task.\n\nAct: finish")
        return
    more = " (the end is cut off)" if truncated else ""
    yield f"Think: The output is {cut(answer, 80)}{more}, so that is the answer.\n\nAct: answer({answer})"


# ---------------------------------------------------------------------------------------------

POLICIES = {"alfworld": alfworld_reply, "db": db_reply, "os": os_reply}
# what a policy reads of the env besides its name: the task's reference solution (task data,
# never the episode's state). A plain call: DB and OS envs live in the collector's threads
# (an env in a child process, EnvProcess, forwards no such method)
REFERENCE = {"db": lambda env: env.gold_statements(), "os": lambda env: env.example_script()}
