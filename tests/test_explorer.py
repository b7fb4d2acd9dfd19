"""The explorer (agentune/explorer.py): an honest teacher that searches the room from what the agent
sees. Checked in the real ALFWorld engine on a small sample of train games (the smallest of each
task type: quickest to load); the full figures (train sample, valid_seen) come from
01_collect.py --agent=explorer."""
import json
import os
import re

import pytest

from agentune.agents import make_agent
from agentune.envs.alfworld_env import ALFWorldEnv
from agentune.explorer import ExplorerAgent, Room, Shuffle, alfworld_reply, parse_goal, parse_list
from agentune.rollout import run_episodes


class OnlyTheName:
    """What the explorer may see of the env: its name (which policy to play). Any other attribute
    (the walkthrough, the game state, admissible commands, expert_reply ...) raises."""
    name = "alfworld"

    def __getattribute__(self, attr):
        if attr in ("name", "__class__"):
            return object.__getattribute__(self, attr)
        raise AssertionError(f"the explorer read env.{attr}")


@pytest.fixture(scope="module")
def sample():
    tasks = ALFWorldEnv.load_tasks(split="train")
    picked = []
    for example in ("put", "clean", "heat", "cool", "examine", "puttwo"):
        of_type = sorted((t for t in tasks if t.data["example"] == example),
                         key=lambda t: (os.path.getsize(t.data["gamefile"]), t.id))
        picked += of_type[:1]
    return picked


@pytest.fixture(scope="module")
def env():
    env = ALFWorldEnv()
    yield env
    env.close()


def play(env, task, seed=0):
    """One episode, the explorer seeing only the messages: (messages, steps, commands admissible
    at each step, as the engine listed them; read here by the test, never by the explorer)."""
    agent = ExplorerAgent(seed=seed)
    messages = [dict(m) for m in env.reset(task)]
    steps, admissible = [], []
    for _ in range(env.max_turns):
        reply = agent.reply([dict(m) for m in messages], OnlyTheName()).content
        admissible.append(env.admissible_commands())
        messages.append({"role": "assistant", "content": reply})
        steps.append(env.step(reply))
        if steps[-1].done:
            break
        messages.append({"role": "user", "content": steps[-1].observation})
    return messages, steps, admissible


def test_parse_goal():
    assert parse_goal("put some spraybottle on toilet.") == ("put", "spraybottle", "toilet")
    assert parse_goal("put a mug in coffeemachine") == ("put", "mug", "coffeemachine")
    assert parse_goal("put two cellphone in sofa.") == ("two", "cellphone", "sofa")
    assert parse_goal("find two pillow and put them in armchair.") == ("two", "pillow", "armchair")
    assert parse_goal("put a hot apple in fridge.") == ("heat", "apple", "fridge")
    assert parse_goal("heat some egg and put it in garbagecan.") == ("heat", "egg", "garbagecan")
    assert parse_goal("put a cool pan in stoveburner.") == ("cool", "pan", "stoveburner")
    assert parse_goal("clean some soapbar and put it in toilet.") == ("clean", "soapbar", "toilet")
    assert parse_goal("look at statue under the desklamp.") == ("look", "statue", "desklamp")
    assert parse_goal("examine the book with the desklamp.") == ("look", "book", "desklamp")
    with pytest.raises(ValueError, match="does not understand"):
        parse_goal("fly to the moon")
    assert parse_list("a cloth 1, a soapbar 1, and a soapbottle 1") == ["cloth 1", "soapbar 1", "soapbottle 1"]
    assert parse_list("a candle 1, and a spraybottle 2") == ["candle 1", "spraybottle 2"]
    assert parse_list("nothing") == []


def conversation(*turns):
    room = ("Here is your task. You are in the middle of a room. Looking quickly around you, you see "
            "a cabinet 2, a cabinet 1, a countertop 1, a sinkbasin 1, and a toilet 1.\n"
            "Your task is to: clean some soapbar and put it in toilet.")
    messages = [{"role": "user", "content": "Here is one example.\n... Your task is to: put some x on y."},
                {"role": "assistant", "content": "ACTION: go to y 1"},
                {"role": "user", "content": room}]
    for i, text in enumerate(turns):
        messages.append({"role": "assistant" if i % 2 == 0 else "user", "content": text})
    return messages


def action(reply):
    return re.search(r"ACTION: (.*)", reply).group(1)


def test_decisions_follow_the_observations():
    # a soapbar is likeliest on the toilet: start there (seed 0: the plain order)
    first = alfworld_reply(conversation())
    assert first.startswith("THOUGHT: The task is to clean some soapbar") and action(first) == "go to toilet 1"
    # nothing there: the thought says what was seen, the next likely place follows
    after = alfworld_reply(conversation(first, "On the toilet 1, you see a candle 1, and a spraybottle 2."))
    assert "candle 1" in after and "spraybottle 2" in after and "No soapbar" in after
    assert action(after) == "go to countertop 1"
    # a closed cabinet is opened; an object seen is taken; then cleaned at the sinkbasin
    turns = [first, "On the toilet 1, you see nothing.", "ACTION: go to countertop 1",
             "On the countertop 1, you see a soapbottle 1.", "ACTION: go to cabinet 1", "The cabinet 1 is closed."]
    assert action(alfworld_reply(conversation(*turns))) == "open cabinet 1"
    turns += ["ACTION: open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see a soapbar 3."]
    take = alfworld_reply(conversation(*turns))
    assert action(take) == "take soapbar 3 from cabinet 1" and "soapbar 3" in take.split("ACTION")[0]
    turns += [take, "You pick up the soapbar 3 from the cabinet 1."]
    assert action(alfworld_reply(conversation(*turns))) == "go to sinkbasin 1"
    room = Room(conversation(*turns))
    assert room.holding == "soapbar 3" and room.at == "cabinet 1" and room.contents["cabinet 1"] == []
    # "Nothing happens." is remembered: the failed action is not tried again in the same state
    turns += ["ACTION: go to sinkbasin 1", "On the sinkbasin 1, you see nothing.",
              "ACTION: clean soapbar 3 with sinkbasin 1", "Nothing happens."]
    retry = alfworld_reply(conversation(*turns))
    assert retry.startswith("THOUGHT: Nothing happened") and action(retry) != "clean soapbar 3 with sinkbasin 1"


def test_a_go_to_that_lands_elsewhere():
    # receptacles can share a spot (a drawer in a desk): "go to" one of them from the other is no
    # move, and AgentBench's env plays the closest admissible command instead: say so, and know
    # where we really are
    messages = conversation("ACTION: go to cabinet 2", "On the cabinet 1, you see a candle 1.")
    assert Room(messages).at == "cabinet 1" and "cabinet 2" not in Room(messages).contents
    assert "I did not get to the cabinet 2 but to the cabinet 1." in alfworld_reply(messages)


def test_never_the_same_action_three_times():
    # an (artificial) dead end: everything already seen, nothing found, look answered twice
    turns = ["ACTION: go to toilet 1", "On the toilet 1, you see nothing.",
             "ACTION: go to countertop 1", "On the countertop 1, you see nothing.",
             "ACTION: go to sinkbasin 1", "On the sinkbasin 1, you see nothing.",
             "ACTION: go to cabinet 1", "The cabinet 1 is open. In it, you see nothing.",
             "ACTION: go to cabinet 2", "The cabinet 2 is open. In it, you see nothing.",
             "ACTION: look", "You are facing the cabinet 2.", "ACTION: look", "You are facing the cabinet 2."]
    assert action(alfworld_reply(conversation(*turns))) != "look"


def test_make_agent_and_unknown_env():
    agent = make_agent("explorer", temperature=0.0, top_p=1.0, max_tokens=512)
    assert isinstance(agent, ExplorerAgent) and agent.describe()["kind"] == "explorer"

    class Other:
        name = "sciworld"
    with pytest.raises(SystemExit, match="no policy for 'sciworld'"):
        agent.reply([], Other())


def test_explorer_wins_train_sample_honestly(env, sample):
    """Every game of the sample won, every command admissible, no hidden state read (OnlyTheName),
    and the thoughts name what was actually seen."""
    for task in sample:
        messages, steps, admissible = play(env, task)
        assert steps[-1].success, f"{task.id}: {steps[-1].finish} after {len(steps)} turns"
        replies = [m["content"] for m in messages if m["role"] == "assistant"][-len(steps):]
        for reply, step, allowed in zip(replies, steps, admissible):
            assert re.fullmatch(r"THOUGHT: [^\n]+\nACTION: [^\n]+", reply), reply
            assert step.info["valid_action"] and step.info["action"] in allowed, (task.id, step.info)
        assert not any(a == b == c for a, b, c in zip(replies, replies[1:], replies[2:]))
        # each object the explorer takes was named in an earlier observation, and its thought says so
        # (observations[i]: what the agent saw just before reply i; observations[0] is the task)
        observations = [m["content"] for m in messages[len(messages) - 2 * len(steps):] if m["role"] == "user"]
        for i, reply in enumerate(replies):
            taken = re.search(r"ACTION: take (\w+ \d+) from", reply)
            if taken:
                assert any(taken.group(1) in obs for obs in observations[1:i + 1]), task.id
                assert taken.group(1) in reply.split("\nACTION")[0], reply


def search_order(seed, turns=5):
    """The places the explorer visits in the room of conversation() when it finds nothing."""
    messages, places = conversation(), []
    for _ in range(turns):
        reply = alfworld_reply(messages, seed)
        place = action(reply).removeprefix("go to ")
        places.append(place)
        messages += [{"role": "assistant", "content": reply},
                     {"role": "user", "content": f"On the {place}, you see a candle 1."}]
    return places


def test_seeds_change_the_search_order():
    # seed 0: the plain order (likeliest kind first: a soapbar on the toilet, the countertop ...)
    assert search_order(0) == ["toilet 1", "countertop 1", "cabinet 1", "cabinet 2", "sinkbasin 1"]
    orders = {tuple(search_order(seed)) for seed in range(8)}
    assert len(orders) > 2 and all(sorted(o) == sorted(search_order(0)) for o in orders)
    # an order is kept for the whole episode: the first turn's ranking, visited in turn
    for seed in range(8):
        room = Room(conversation())
        assert search_order(seed) == room.unexplored("soapbar", Shuffle(seed, room.task_text))


def test_other_seeds_win_too(env, sample):
    for seed in (1, 2):
        assert play(env, sample[0], seed)[1][-1].success


def test_collect_through_worker_processes(sample, tmp_path):
    """01_collect.py's path: the env lives in a child process; the explorer needs nothing from it."""
    out = tmp_path / "alfworld.jsonl"
    summary = run_episodes("alfworld", sample[:2], make_agent("explorer"), str(out), workers=1)
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    for record in map(json.loads, out.read_text().splitlines()):
        assert record["agent"]["kind"] == "explorer" and record["finish"] == "answered"
