"""ScienceWorld env against the real simulator (JVM): gold paths score 100, replies are parsed
and scored as AgentTuning's harness does, and no JVM outlives its env or its process."""
import os
import signal
import subprocess
import sys
import time

import pytest

from agentune.testing import play_expert
from agentune.envs import sciworld_env
from agentune.envs.sciworld_env import SciWorldEnv, evaluation_variations

# quick task types (gold paths of 3-18 actions) on test variations
GOLD_TASKS = ["chemistry-mix-paint-secondary-color#27", "find-non-living-thing#225",
              "lifespan-longest-lived#93"]


@pytest.fixture(scope="module")
def env():
    env = SciWorldEnv()
    yield env
    env.close()


def run_expert(env, task_id):
    return play_expert(env, SciWorldEnv.make_task(task_id))


@pytest.mark.parametrize("task_id", GOLD_TASKS)
def test_gold_path_scores_100(env, task_id):
    start = time.time()
    messages, step = run_expert(env, task_id)
    assert (step.reward, step.success, step.finish) == (1.0, True, "answered")
    # prompt: instructions, "Ok.", a one-shot example of the same task type, then this task
    assert messages[0]["content"].startswith("Interact with a household")
    assert messages[2]["role"] == "user" and messages[3]["content"].startswith("Think:")
    assert messages[-1]["content"].startswith("The preceding task has ended.")
    assert "Your task is to" in messages[-1]["content"]
    print(f"{task_id}: {time.time() - start:.1f}s")


def test_replies_format_and_failure(env):
    env.reset(SciWorldEnv.make_task("chemistry-mix-paint-secondary-color#27"))
    think = env.step("Think: first I look at the paints.")
    assert (think.observation, think.done) == ("OK.", False)
    assert think.info == {"valid_format": True, "valid_action": True, "action": "think"}

    bad = env.step("go to kitchen")             # neither "Think:" nor "Action:"
    assert not bad.done and not bad.info["valid_format"] and "Invalid format" in bad.observation

    unknown = env.step("Action: fly to the moon")  # replaced by the closest valid action
    assert unknown.info["valid_format"] and not unknown.info["valid_action"]
    assert unknown.info["action"] != "fly to the moon" and not unknown.done

    # focusing on the wrong object fails the task: the episode ends, keeping the score so far
    failed = env.step("Thought: the agent matters.\nAction: focus on agent")
    assert failed.done and not failed.success and failed.finish == "answered"
    assert failed.reward == unknown.reward < 1


def test_one_shot_is_a_real_gold_episode(env, tmp_path, monkeypatch):
    monkeypatch.setattr(sciworld_env, "CACHE_DIR", str(tmp_path))
    example = env.one_shot("find-non-living-thing")
    assert [m["role"] for m in example] == ["user", "assistant"] * (len(example) // 2)
    assert "Your task is to find a(n) non-living thing" in example[0]["content"]
    assert example[-1]["content"].startswith("Action: ")
    assert any(m["content"].startswith("Action: focus on") for m in example)
    assert env.one_shot("find-non-living-thing") == example       # now from the cache
    assert len(list(tmp_path.rglob("find-non-living-thing.json"))) == 1


def test_long_examples_are_trimmed_from_the_front():
    turn = lambda role, text: {"role": role, "content": text}
    example = [turn("user", "task"), turn("assistant", "Think: plan"), turn("user", "OK.")]
    for i in range(100):
        example += [turn("assistant", f"Action: step {i}"), turn("user", "x" * 200)]
    example.pop()
    trimmed = sciworld_env.trim_example(example)
    assert sum(len(m["content"]) for m in trimmed) <= sciworld_env.EXAMPLE_CHARS
    assert trimmed[:3] == example[:3] and trimmed[-1] == example[-1]      # the end is kept
    assert [m["role"] for m in trimmed] == ["user", "assistant"] * (len(trimmed) // 2)
    assert sciworld_env.trim_example(example[:7]) == example[:7]


def test_unknown_actions_map_to_the_closest_valid_one():
    valid = ["focus on seed", "move seed to flower pot", "look around", "focus on agent"]
    assert sciworld_env.closest_valid_action("move the seed to cup", valid) == "move seed to flower pot"
    # never an unasked focus (it would end the task), never a focus on the agent
    assert sciworld_env.closest_valid_action("seed seed", valid) == "move seed to flower pot"
    assert sciworld_env.closest_valid_action("focus on the seed", valid) == "focus on seed"
    assert sciworld_env.closest_valid_action("go kitchen", valid) == "open door to kitchen"


def test_task_ids_from_a_file(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("boil#26\n\nfind-plant#225\n")
    tasks = SciWorldEnv.load_tasks(str(path))
    assert [(t.id, t.data) for t in tasks] == [("boil#26", {"task_name": "boil", "variation": 26}),
                                               ("find-plant#225", {"task_name": "find-plant", "variation": 225})]


def test_parse_action():
    assert SciWorldEnv.parse_action("Action: open door to kitchen") == ("action", "open door to kitchen")
    assert SciWorldEnv.parse_action("Thought: go.\nAction:  pick up thermometer \n") == ("action", "pick up thermometer")
    assert SciWorldEnv.parse_action("Think: I need water.") == ("think", "I need water.")
    assert SciWorldEnv.parse_action("open door to kitchen") is None
    assert SciWorldEnv.parse_action("") is None


def test_evaluation_subset_is_agenttunings():
    # AgentTuning: random.seed(1); shuffle; first 10 (task 15: 9, task 25: 5)
    assert evaluation_variations(0, range(21, 30)) == [26, 27, 28, 25, 24, 21, 29, 22, 23]
    assert len(evaluation_variations(15, range(1038, 1386))) == 9
    assert len(evaluation_variations(25, range(15, 20))) == 5
    assert evaluation_variations(3, range(100)) == evaluation_variations(3, range(100))
    with pytest.raises(ValueError):
        SciWorldEnv.make_task("boil")


def test_jvm_ends_on_close():
    env = SciWorldEnv()
    pid = env.sim.proc.pid
    env.close()
    assert env.sim.proc.poll() is not None and not java_alive(pid)
    env.close()                                 # idempotent


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_jvm_ends_with_its_process(how):
    # the env is never closed: atexit (normal exit) or the broken stdin pipe (kill -9) ends the JVM
    code = ("from agentune.envs.sciworld_env import SciWorldEnv; import sys, time;"
            "env = SciWorldEnv(); print(env.sim.proc.pid, flush=True);"
            + ("time.sleep(60)" if how == "kill" else "sys.exit(0)"))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    java_pid = int(child.stdout.readline())
    if how == "kill":
        os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    for _ in range(100):
        if not java_alive(java_pid):
            break
        time.sleep(0.1)
    assert not java_alive(java_pid), f"JVM {java_pid} survived its Python process ({how})"


def java_alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read().lower()
    except FileNotFoundError:
        return False


def test_cut_episode_keeps_the_score_it_reached(env):
    """Cut by the runner's reply limit (or the context), an episode keeps the score it reached,
    as AgentTuning's harness counts it (not 0)."""
    from agentune.agents import ExpertAgent
    from agentune.rollout import run_episode
    task = SciWorldEnv.make_task(GOLD_TASKS[0])
    record = run_episode(env, ExpertAgent(), task, max_turns=3)   # far short of the gold path
    assert record["finish"] == "max_turns" and not record["success"]
    assert record["reward"] == env.last_score / 100 > 0
