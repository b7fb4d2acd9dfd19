"""The AgentBench OS environment on the real sandbox: task loading, prompt, actions, scoring and
the expert over every shared task that has an example."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentune.agents import ExpertAgent
from agentune.envs.os_env import INSTRUCTIONS, OSEnv
from agentune.paths import data_path
from agentune.rollout import run_episode
from agentune.sandbox import Sandbox

needs_sandbox = pytest.mark.skipif(not Sandbox.available()[0], reason=Sandbox.available()[1])

# Upstream tasks whose reference example cannot score, in AgentBench's container as here:
EXPECTED_EXPERT_FAILURES = {
    # init runs `useradd jack && cd /home/jack && ... && su - jack` as an independent process
    # (AgentBench's execute_independent), so the agent's shell is still root's, in /; the example
    # `chmod 777 test && ~/test` assumes a shell of jack's in /home/jack and finds no ./test
    "6/new.json#0", "6/new.json#1", "dev.json#24",
    # checker check/size-match.py does int() on the number, so du -sh's "4.0K" can never match
    "dev.json#8",
    # data/7: the example's `find -type f -maxdepth 1` prints find's warning about option order,
    # so its output (the answer) is not the integer the checker int()s
    "7/2023-06-07-00-13-14.json#22",
}
# data/7 tasks whose expected value is the example's output in another process than the agent's
# shell, on a quantity that depends on which processes exist at that moment: process counts (`ps
# -A | wc -l`, `ps -e` + `who`) and recursive counts from / that walk /proc (`find . ...`, `find
# $TARGET_DIR ...` with the variable unset). The replayed answer is usually off by a few, not
# always: pass or fail, both are upstream's nondeterminism
STATE_DEPENDENT = {"7/2023-06-07-00-13-14.json#0", "7/2023-06-07-00-13-14.json#8",
                   "7/2023-06-07-00-13-14.json#29", "7/2023-06-07-00-13-14.json#75"}


@pytest.fixture(scope="module")
def tasks():
    """Every shared OS task: the std test set, dev and 6-backup."""
    return {t.id: t for t in OSEnv.load_tasks(path=data_path("agentbench", "os_interaction"))}


def test_load_tasks(tasks):
    assert len(tasks) == 179
    std, dev = OSEnv.load_tasks(split="std"), OSEnv.load_tasks(split="dev")
    # AgentBench's std test set: every file of data/1..7; collection's dev: dev.json less the one
    # task whose description is also in std (6-backup.json repeats data/6: test data, never loaded)
    assert len(std) == 144 and sum(t.data["example"] is not None for t in std) == 140
    assert {t.id.split("/")[0] for t in std} == set("1234567")
    assert len(dev) == 25 and "dev.json#10" not in {t.id for t in dev}
    assert not {t.prompt for t in std} & {t.prompt for t in dev}
    assert [t.id for t in OSEnv.load_tasks()] == [t.id for t in dev]   # the default: collection's
    task = tasks["4/Q30.json#2"]
    assert task.prompt == task.data["description"]
    assert tasks["dev.json#3"].data["check"][0][1].startswith("#!/bin/bash")   # check/0.sh loaded
    assert tasks["1/stock.json#0"].data["check"][0] is None
    assert tasks["5/new.json#7"].data["init"] == []      # its 'create' is a list upstream: no init
    assert [t.id for t in OSEnv.load_tasks(split="dev.json")] == [f"dev.json#{i}" for i in range(26)]
    assert len(OSEnv.load_tasks(split="4")) == 19


def test_instructions_have_real_newlines_as_agentbench_old():
    assert INSTRUCTIONS.endswith("in each turn.\n\n") and "\\n" not in INSTRUCTIONS


def test_parse_action():
    parse = OSEnv.parse_action
    assert parse("Think: list.\n\nAct: bash\n\n```bash\nls -1 /etc | wc -l\n```") == ("bash", "ls -1 /etc | wc -l")
    assert parse("Act: bash\n```bash\ncd /\n```\nand\n```bash\nls\n```") == ("bash", "cd /\n\nls")
    assert parse("Think: got it.\n\nAct: answer(220)") == ("answer", "220")
    assert parse("Act: answer( (a) )") == ("answer", " (a) ")
    assert parse("Act: finish") == ("finish", None)
    assert parse("Act: answer 42") is None          # no parentheses: not an answer
    assert parse("Act: answer 42\nAct: finish") == ("finish", None)
    assert parse("Act: bash\nAct: answer(1)") == ("answer", "1")   # the last valid Act wins
    assert parse("I think the answer is 3.") is None
    assert parse("Act: run ls") is None


@needs_sandbox
def test_episode_prompt_observations_and_scoring(tasks):
    env = OSEnv(command_timeout=2)
    try:
        messages = env.reset(tasks["4/Q19.json#0"])      # lines of /root/matrix.txt; integer-match
        assert messages[0]["role"] == "user" and messages[0]["content"].startswith(INSTRUCTIONS)
        assert messages[0]["content"].endswith("Now, my problem is:\n\ntell me how many files are in the directory \"/etc\"?")
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
        assert messages[-1]["content"].endswith(tasks["4/Q19.json#0"].prompt)
        step = env.step("Think: look.\n\nAct: bash\n\n```bash\ncat /root/matrix.txt\n```")
        assert step.observation == "The output of the OS:\n\n1 2 3\n4 5 6\n7 8 9\n" and not step.done
        assert env.step("Act: bash\n\n```bash\ncd /root\n```").observation == "The output of the OS is empty."
        step = env.step("Act: bash\n\n```bash\npython3 -c 'print(\"x\" * 2000)'\n```")
        assert step.observation == "The output of the OS:\n\n" + "x" * 780 + "\n[truncated because the output is too long]"
        step = env.step("Act: bash\n\n```bash\nsleep 60\n```")
        assert step.info["exit_code"] == -1 and not step.done
        step = env.step("Think: it is 3.\n\nAct: answer(3)")
        assert step.done and step.success and step.reward == 1.0 and step.finish == "answered"

        env.reset(tasks["4/Q19.json#0"])
        step = env.step("Act: answer(4)")
        assert step.done and not step.success and step.reward == 0.0
        env.reset(tasks["4/Q19.json#0"])
        step = env.step("I have no idea")
        assert step.done and step.finish == "invalid_format" and step.info["valid_format"] is False

        # AgentBench judges an episode that ends without an answer with the answer "None": a
        # check-by-script task done right passes even so, after a bad reply or out of rounds
        env.reset(tasks["6/new.json#3"])                  # remove the SUID bit of find
        env.step("Act: bash\n\n```bash\nchmod u-s /usr/bin/find\n```")
        step = env.step("I am done")
        assert step.finish == "invalid_format" and step.success and step.reward == 1.0
        env.reset(tasks["6/new.json#3"])
        env.step("Act: bash\n\n```bash\nchmod u-s /usr/bin/find\n```")
        assert env.score_unfinished() == (1.0, True)
        env.reset(tasks["6/new.json#3"])
        assert env.score_unfinished() == (0.0, False)

        # a match task whose `start` leaves a variable in the agent's shell
        env.reset(tasks["4/Q49.json#1"])
        assert env.step("Act: bash\n\n```bash\necho $var\n```").observation == "The output of the OS:\n\n10\n"
        assert env.step("Act: answer(yes)").success
        # a check-by-script task: finishing without doing the work fails, doing it passes
        env.reset(tasks["6/new.json#3"])                  # remove the SUID bit of find
        assert not env.step("Act: finish").success
        env.reset(tasks["6/new.json#3"])
        env.step("Act: bash\n\n```bash\nchmod u-s /usr/bin/find\n```")
        assert env.step("Act: finish").success
    finally:
        env.close()


@needs_sandbox
def test_expected_value_comes_from_a_fresh_copy(tasks):
    """The agent cannot change the expected value of a question by changing the machine."""
    env = OSEnv()
    try:
        env.reset(tasks["4/Q09.json#0"])                  # how many files under /var
        right = env.expected[0].strip()
        env.step("Act: bash\n\n```bash\nfor i in 1 2 3; do touch /var/agent-$i; done\n```")
        assert env.step(f"Act: answer({right})").success
    finally:
        env.close()


@needs_sandbox
def test_expert_solves_the_tasks_with_an_example(tasks):
    """Over the std test set and collection's dev set (6-backup repeats data/6)."""
    todo = [t for t in tasks.values() if t.data["example"] is not None and not t.id.startswith("6-backup")]

    def play(task):
        env = OSEnv()
        try:
            return task.id, run_episode(env, ExpertAgent(), task, OSEnv.max_turns)
        finally:
            env.close()

    start = time.time()
    with ThreadPoolExecutor(4) as pool:
        results = dict(pool.map(play, todo))
    failed = {task_id for task_id, r in results.items() if not r["success"]}
    rate = 1 - len(failed) / len(todo)
    print(f"os expert: {len(todo) - len(failed)}/{len(todo)} = {rate:.1%} in {time.time() - start:.0f}s")
    assert all(r["finish"] == "answered" for r in results.values()), \
        {i: (r["finish"], r.get("error")) for i, r in results.items() if r["finish"] != "answered"}
    unexpected = failed - EXPECTED_EXPERT_FAILURES - STATE_DEPENDENT   # a regression
    fixed = EXPECTED_EXPERT_FAILURES - failed                          # an upstream bug that vanished?
    assert not unexpected and not fixed, {i: results[i]["messages"][-2:] for i in unexpected | fixed}
    assert rate >= 0.9
