"""MiniWoB++ env in real headless Chromium: every task's scripted solver succeeds, replies are
parsed and checked, wrong answers fail, and no browser outlives its env or its process."""
import os
import subprocess
import sys
import time

import pytest

from agentune.testing import play_expert
from agentune.envs.miniwob_env import TASKS, MiniWoBEnv, walk

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def env():
    env = MiniWoBEnv()
    yield env
    env.close()


def run_expert(env, task_id):
    return play_expert(env, MiniWoBEnv.make_task(task_id))


@pytest.mark.parametrize("task_name", TASKS)
def test_solver_succeeds(env, task_name):
    for seed in SEEDS:
        messages, step = run_expert(env, f"{task_name}#{seed}")
        assert (step.reward, step.success, step.finish) == (1.0, True, "answered"), f"{task_name}#{seed}"
        assert step.info["raw_reward"] > 0
    assert messages[-1]["content"].startswith("Task: ") and "\nPage:\n" in messages[-1]["content"]


def test_prompt_has_real_one_shot(env):
    messages = env.reset(MiniWoBEnv.make_task("click-button#3"))
    assert messages[0]["content"].startswith("You are a web agent")
    example = messages[2:-1]
    assert example[0]["content"].startswith('Task: Enter the username "')
    assert [m["role"] for m in example] == ["user", "assistant"] * (len(example) // 2)
    assert example[-1]["content"].endswith("Action: click(11)")   # login, the example's last action


def test_replies_format_and_wrong_answers(env):
    env.reset(MiniWoBEnv.make_task("enter-text#5"))
    bad = env.step("I will type the name.")
    assert not bad.done and bad.info == {"valid_format": False, "valid_action": False, "action": ""}
    assert bad.observation.startswith("Invalid format")
    missing = env.step("Thought: x\nAction: click(999)")
    assert not missing.done and missing.info["valid_format"] and not missing.info["valid_action"]
    assert "no element [999]" in missing.observation and "Page:" in missing.observation
    not_a_field = env.step('Action: type(6, "hello")')        # 6 is the Submit button
    assert not not_a_field.info["valid_action"] and "not a text field" in not_a_field.observation
    typed = env.step('Action: type(5, "not the word")')
    assert typed.info["valid_action"] and 'value="not the word"' in typed.observation
    wrong = env.step("Action: click(6)")                        # submit the wrong text
    assert wrong.done and not wrong.success and wrong.reward == 0.0 and wrong.info["raw_reward"] < 0

    env.reset(MiniWoBEnv.make_task("click-button#0"))
    target = env.utterance.split('"')[1]
    others = [n for n in walk(env.root) if n["tag"] == "button" and n["text"] != target]
    assert others, "click-button#0 shows several buttons"
    step = env.step(f"Action: click({others[0]['ref']})")       # a button that is not it
    assert step.done and not step.success and step.reward == 0.0


def test_parse_action():
    assert MiniWoBEnv.parse_action("Thought: ok\nAction: click(12)") == ("click", [12])
    assert MiniWoBEnv.parse_action('Action: type(7, "a \\"b\\", c")') == ("type", [7, 'a "b", c'])
    assert MiniWoBEnv.parse_action("Action: select(4, 'Bobine')") == ("select", [4, "Bobine"])
    assert MiniWoBEnv.parse_action("Action: click(twelve)") is None
    assert MiniWoBEnv.parse_action('Action: click(1, "x")') is None
    assert MiniWoBEnv.parse_action("Action: scroll(3)") is None
    assert MiniWoBEnv.parse_action("click(3)") is None
    with pytest.raises(ValueError):
        MiniWoBEnv.make_task("click-shape#0")                  # not a text task of ours
    assert len(MiniWoBEnv.load_tasks()) == 10 * len(TASKS)
    assert {t.data["seed"] for t in MiniWoBEnv.load_tasks(split="train")}.isdisjoint(range(10))


def test_task_ids_from_a_file(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("click-test#7\n\nlogin-user#0\n")
    assert [(t.id, t.data) for t in MiniWoBEnv.load_tasks(str(path))] == [
        ("click-test#7", {"task_name": "click-test", "seed": 7}), ("login-user#0", {"task_name": "login-user", "seed": 0})]


def descendants(pid):
    """pid and every process below it (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read().lower()
    except FileNotFoundError:
        return False


def wait_dead(pids, seconds=10):
    for _ in range(int(seconds * 10)):
        if not any(alive(p) for p in pids):
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def browser_processes(pid):
    names = []
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/cmdline") as f:
                names.append((p, f.read()))
        except FileNotFoundError:
            pass
    return [p for p, cmd in names if "chrom" in cmd]


def test_browser_ends_on_close():
    env = MiniWoBEnv()
    pids = browser_processes(env.browser.driver.service.process.pid)
    assert any("chromedriver" in open(f"/proc/{p}/cmdline").read() for p in pids) and len(pids) >= 2
    env.close()
    assert wait_dead(pids) == [], "chromium/chromedriver survived close()"
    env.close()                                                  # idempotent


def test_browser_ends_with_its_process():
    # the env is never closed: atexit ends the browser when the process exits
    code = ("from agentune.envs.miniwob_env import MiniWoBEnv; env = MiniWoBEnv();"
            "env.reset(MiniWoBEnv.make_task('click-test#0')); print(env.browser.driver.service.process.pid, flush=True);"
            "import sys; sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    driver_pid = int(child.stdout.readline())
    pids = browser_processes(driver_pid)
    assert len(pids) >= 2
    child.stdin.close()
    child.wait(timeout=30)
    assert wait_dead(pids) == [], "chromium/chromedriver survived its Python process"
