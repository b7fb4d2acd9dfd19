"""The explorer: an honest offline teacher that searches, instead of replaying a solution.

The expert agent replays each task's reference solution (ALFWorld: the game's walkthrough), so it
walks straight to where an object is hidden and never shows a search, a wrong guess or a
recovery. The explorer sees only what a model sees: the conversation (the task and every
observation so far). Each reply is a pure function of those messages and a seed, so it is
deterministic, thread safe, and the same whether the env runs in this process or another:

    agent = ExplorerAgent(seed=0)          # make_agent("explorer"); other seeds, other search orders
    reply = agent.reply(messages, env)     # reads env.name only (which policy), never env state

ALFWorld: search the receptacles the room description lists, the likeliest places for the object
first (common household sense, no per-game knowledge), open the closed ones, take the object when
it shows up, heat/cool/clean it at the microwave/fridge/sinkbasin, find a desklamp, put it where
the task says; remember what was seen on the way; after "Nothing happens." try the next option.
Its thoughts say what the last observation showed and why the next action follows.
"""
import itertools
import random
import re
import zlib

from agentune.agents import Agent, Reply


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


JITTER = 2.0   # seeds other than 0: how far (in ranks of likelihood) a kind of place may move up the order


class Shuffle:
    """The seed's say in the search: seed 0 searches in the plain order (likeliest kind first,
    lowest number first); other seeds shuffle places of a kind and let neighbouring kinds swap
    (a kind moves as a block: the one fridge never ends up behind twenty cabinets)."""

    def __init__(self, seed, task_text):
        self.seed, self.task_text = seed, task_text

    def _key(self, name):
        """A number in [0, 1) for a place or a kind, the same at every turn of the episode."""
        return random.Random(zlib.crc32(f"{self.seed}:{self.task_text}:{name}".encode())).random()

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


POLICIES = {"alfworld": alfworld_reply}
