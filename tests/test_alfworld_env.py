"""ALFWorld in the real engine (TextWorld PDDL + Fast Downward) on the public valid_seen games.

Loading a game costs 1-3 s (PDDL translation; kitchens more), so the expert is checked here on
the smallest game of each task type; the full 140-game valid_seen run goes through 01_collect.py."""
import json
import os
import sys

import pytest

from agentune.agents import make_agent
from agentune.envs.alfworld_env import EXAMPLES, INSTRUCTION, ALFWorldEnv
from agentune.rollout import run_episodes


@pytest.fixture(scope="module")
def tasks():
    return ALFWorldEnv.load_tasks(split="valid_seen")


@pytest.fixture(scope="module")
def env():
    env = ALFWorldEnv()
    yield env
    env.close()


def smallest_game(tasks, example):
    """The smallest game of a task type: the quickest to load (kitchens take the longest)."""
    return min((t for t in tasks if t.data["example"] == example),
               key=lambda t: (os.path.getsize(t.data["gamefile"]), t.id))


def play_expert(env, max_turns=50):
    steps = []
    for _ in range(max_turns):
        steps.append(env.step(env.expert_reply()))
        if steps[-1].done:
            return steps
    raise AssertionError("the expert did not finish")


def test_load_tasks(tasks):
    assert len(tasks) == 140
    assert len({t.id for t in tasks}) == 140
    split, task_dir, trial = tasks[0].id.split("/")
    assert split == "valid_seen" and trial.startswith("trial_T")
    assert {t.data["example"] for t in tasks} == set(EXAMPLES)
    assert all(t.prompt and not t.prompt.startswith("Your task") for t in tasks)
    # the same games through a directory, a tarball and a single file get the same ids
    by_dir = ALFWorldEnv.load_tasks(path=tasks[0].data["gamefile"].rsplit("/", 3)[0])
    assert [t.id for t in by_dir] == [t.id for t in tasks]
    from agentune.paths import data_path
    by_tarball = ALFWorldEnv.load_tasks(path=data_path("alfworld", "json_2.1.1-valid_seen.tar.xz"))
    assert [t.id for t in by_tarball] == [t.id for t in tasks]
    [one] = ALFWorldEnv.load_tasks(path=tasks[5].data["gamefile"])
    assert one.id == tasks[5].id and one.prompt == tasks[5].prompt
    assert len(ALFWorldEnv.load_tasks(split="valid_train")) == 200


def test_parse_action():
    parse = ALFWorldEnv.parse_action
    assert parse("THOUGHT: find it.\nACTION: go to Cabinet 1.\nmore text") == ("act", "go to cabinet 1")
    assert parse("ACTION:   put  mug 1 in/on  desk 1  ") == ("act", "put mug 1 in/on desk 1")
    assert parse("THOUGHT: I should go to cabinet 1.") is None
    assert parse("ACTION: ") is None
    assert parse("Action: go to cabinet 1") is None  # AgentBench's parser is case-sensitive


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_expert_walkthrough_wins(env, tasks, example):
    task = smallest_game(tasks, example)
    argv = list(sys.argv)
    messages = env.reset(task)
    assert sys.argv == argv  # the PDDL translator rewrites it; the env puts it back
    walkthrough = list(env.walkthrough)
    # AgentBench's prompt: instruction, acknowledgement, the example of this task type, the task
    assert messages[0] == {"role": "user", "content": INSTRUCTION}
    assert messages[2]["content"] == "Here is one example.\n" + EXAMPLES[example][0]
    assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2) + ["user"]
    assert messages[-1]["content"].startswith("Here is your task. You are in the middle of a room.")
    assert messages[-1]["content"].endswith("Your task is to: " + task.prompt)
    steps = play_expert(env)
    assert steps[-1].success and steps[-1].reward == 1.0 and steps[-1].finish == "answered"
    assert all(s.info["valid_format"] and s.info["valid_action"] for s in steps)
    assert len(steps) == len(walkthrough) and env.on_walkthrough  # no planner needed
    observations = " ".join(s.observation for s in steps)
    assert "You move" not in observations and "You arrive at" not in observations
    assert not any(s.info["action"].startswith("move ") for s in steps)  # AgentBench's "put X in/on Y"


def test_put_wording_both_ways(env, tasks):
    env.reset(smallest_game(tasks, "puttwo"))
    # play the walkthrough up to its first placement, then place in the engine's own wording
    while not env.walkthrough[0].startswith("move "):
        assert env.step(env.expert_reply()).info["valid_action"]
    engine_command = env.walkthrough[0]
    obj, receptacle = engine_command[len("move "):].split(" to ")
    assert f"put {obj} in/on {receptacle}" in env.admissible_commands()
    step = env.step(f"ACTION: {engine_command}")
    assert step.info == {"valid_format": True, "valid_action": True, "action": f"put {obj} in/on {receptacle}"}
    assert step.observation == f"You put the {obj} in/on the {receptacle}."
    assert play_expert(env)[-1].success


def test_inadmissible_action_mapped_like_agentbench(env, tasks):
    """AgentBench's process_action: an inadmissible action becomes the admissible command with the
    highest BLEU against it; one that matches nothing (BLEU <= 0.01) reaches the engine as it is."""
    env.reset(smallest_game(tasks, "put"))
    before = env.admissible_commands()
    step = env.step("THOUGHT: let me try.\nACTION: qwxz")
    assert step.observation == "Nothing happens."
    assert not step.done and step.info == {"valid_format": True, "valid_action": False, "action": "qwxz"}
    assert env.admissible_commands() == before  # the game did not move
    place = next(c for c in before if c.startswith("go to ")).removeprefix("go to ")
    step = env.step(f"ACTION: walk over to the {place}")
    assert step.info == {"valid_format": True, "valid_action": False, "action": f"go to {place}"}
    assert step.observation != "Nothing happens."
    steps = play_expert(env)
    assert steps[-1].success


def test_planner_recovers_after_deviation(env, tasks):
    env.reset(smallest_game(tasks, "put"))  # a small room: planning a kitchen takes ~10 s
    detour = next(c for c in reversed(env.admissible_commands())
                  if c.startswith("go to ") and c != env.walkthrough[0])
    step = env.step(f"ACTION: {detour}")
    assert step.info["valid_action"] and not step.done
    steps = play_expert(env)
    assert steps[-1].success and steps[-1].finish == "answered"
    assert not env.on_walkthrough and all(s.info["valid_action"] for s in steps)


def test_reply_without_action_plays_its_first_line(env, tasks):
    """No "ACTION:": AgentBench plays the reply's first line (mapped like any action)."""
    env.reset(smallest_game(tasks, "examine"))
    place = next(c for c in env.admissible_commands() if c.startswith("go to ")).removeprefix("go to ")
    step = env.step(f"go to {place}\nbecause it may hold the object")
    assert not step.done and step.info == {"valid_format": False, "valid_action": True, "action": f"go to {place}"}


def test_same_output_three_times_fails(env, tasks):
    """AgentBench: from the 4th round on, the last 3 outputs being the same ends the episode as a
    failure (checked before the game's end)."""
    env.reset(smallest_game(tasks, "examine"))
    steps = [env.step("THOUGHT: hm.\nACTION: look") for _ in range(4)]
    assert [s.done for s in steps] == [False, False, False, True]
    assert steps[-1].finish == "repetition" and not steps[-1].success and steps[-1].reward == 0
    env.reset(smallest_game(tasks, "examine"))
    steps = [env.step(f"THOUGHT: {i}\nACTION: look") for i in range(4)]   # different outputs
    assert not any(s.done for s in steps)


def test_solved_example_is_agentbench_text_unedited(env, tasks):
    messages = env.reset(smallest_game(tasks, "examine"))
    example = EXAMPLES["examine"]
    assert messages[2]["content"] == "Here is one example.\n" + example[0]
    assert [m["content"] for m in messages[3:2 + len(example)]] == example[1:]
    assert messages[1 + len(example)]["content"] == "ACTION: Task succeeded.\n"
    assert [m["role"] for m in messages[2:2 + len(example)]] == ["user", "assistant"] * (len(example) // 2)


def test_std_and_dev_sets_and_disjoint_from_train():
    """The test sets AgentTuning evaluated on (AgentBench std: 50 valid_unseen games; dev: 20)
    share no game and no scene with train, where collection draws from."""
    std, dev = ALFWorldEnv.load_tasks(split="std"), ALFWorldEnv.load_tasks(split="dev")
    assert len(std) == 50 and len(dev) == 20 and not {t.id for t in std} & {t.id for t in dev}
    assert all(t.id.startswith("valid_unseen/") for t in std + dev)
    train = ALFWorldEnv.load_tasks(split="train")
    assert len(train) == 3553
    scene = lambda t: t.id.split("/")[1].rsplit("-", 1)[1]   # <type>-<object>-...-<scene>
    assert not {ALFWorldEnv.task_key(t) for t in std + dev} & {ALFWorldEnv.task_key(t) for t in train}
    assert not {scene(t) for t in std + dev} & {scene(t) for t in train}


def test_step_limit(env, tasks):
    assert ALFWorldEnv.max_turns == 35  # AgentBench.old's max_step
    env.reset(smallest_game(tasks, "examine"))
    env.max_turns = 3
    try:
        steps = [env.step("ACTION: look") for _ in range(3)]
    finally:
        del env.max_turns
    assert [s.done for s in steps] == [False, False, True]
    assert steps[-1].finish == "max_turns" and not steps[-1].success and steps[-1].reward == 0


def test_expert_collection_in_worker_processes(tasks, tmp_path):
    picked = [smallest_game(tasks, "clean"), smallest_game(tasks, "examine")]
    out = tmp_path / "alfworld.jsonl"
    summary = run_episodes("alfworld", picked, make_agent("expert"), str(out), workers=2)
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["task_id"] for r in records) == sorted(t.id for t in picked)
    for record in records:
        assert record["finish"] == "answered" and record["reward"] == 1.0
        assert record["messages"][-1]["role"] == "assistant"
        assert record["messages"][-1]["content"].startswith("THOUGHT: ")


PLAY_BOTH_WAYS = r"""
import json, sys
from agentune.envs.alfworld_env import ALFWorldEnv
ALFWorldEnv.fast_textworld = sys.argv[1] == "fast"
tasks = {t.id: t for t in ALFWorldEnv.load_tasks(split="valid_seen")}
env, seen = ALFWorldEnv(), []
for task_id in sys.argv[2:]:
    messages = env.reset(tasks[task_id])
    seen.append([messages[-1]["content"], env.walkthrough[:], env.admissible_commands()])
    detour = next(c for c in reversed(env.admissible_commands()) if c != env.walkthrough[0])
    # the walkthrough's first step, an inadmissible action, a detour, then the expert (replanning)
    replies = [env.expert_reply(), "ACTION: take the thing from the place", f"ACTION: {detour}"]
    for turn in range(40):
        step = env.step(replies[turn] if turn < len(replies) else env.expert_reply())
        seen.append([step.observation, step.done, step.reward, step.info, env.admissible_commands()])
        if step.done:
            break
import fast_downward
print(json.dumps({"fast": getattr(fast_downward, "_agentune_fast", False), "seen": seen}))
"""


def test_sped_up_textworld_plays_the_same_games(tasks):
    """speed_up_textworld() keeps TextWorld's results: the same games played the same way, with and
    without it (each in its own process: it patches the engine's modules), see the same
    observations, admissible commands, walkthroughs and replans."""
    import subprocess
    picked = [smallest_game(tasks, "clean").id, smallest_game(tasks, "puttwo").id]
    runs = {}
    for mode in ("plain", "fast"):
        out = subprocess.run([sys.executable, "-c", PLAY_BOTH_WAYS, mode, *picked], capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        runs[mode] = json.loads(out.stdout.splitlines()[-1])
    assert runs["fast"]["fast"] and not runs["plain"]["fast"]
    assert runs["fast"]["seen"] == runs["plain"]["seen"]
    assert sum(step[2] for step in runs["fast"]["seen"] if len(step) == 5) == 2  # both games won
