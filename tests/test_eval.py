"""The general benchmarks as one-turn environments (GSM8K, HumanEval in the real sandbox,
multiple choice) and 05_eval.py end to end with the expert (reference answers)."""
import json
import os
import subprocess
import sys

import pytest

from agentune.envs.gsm8k_env import GSM8KEnv
from agentune.envs.humaneval_env import HumanEvalEnv, build_program, extract_code, run_program
from agentune.envs.mc_env import MCEnv
from agentune.paths import REPO_ROOT


def test_gsm8k_scoring():
    env = GSM8KEnv(shots=2)
    task = GSM8KEnv.load_tasks(split="test")[0]  # Janet's ducks: 18
    messages = env.reset(task)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert "The answer is 72." in messages[1]["content"] and "<<" not in messages[1]["content"]
    assert task.data["target"] == "18"
    for reply, reward in [("16 - 3 - 4 = 9 eggs, 9 * 2 = 18. The answer is 18.", 1.0),
                          ("The answer is $18.00", 1.0),
                          ("She makes 18 dollars", 1.0),                      # last number
                          ("The answer is 18.\n\nQuestion: 2 + 2? The answer is 4.", 1.0),
                          ("The answer is 9 eggs, so 18 dollars.", 0.0),    # the marked number counts
                          ("The answer is 16.", 0.0)]:
        env.reset(task)
        step = env.step(reply)
        assert step.done and step.reward == reward, reply
    env.reset(task)
    step = env.step("I don't know.")
    assert step.finish == "invalid_format" and step.info["valid_format"] is False
    # the reference answers score 100% over the whole test split
    tasks = GSM8KEnv.load_tasks(split="test")
    assert len(tasks) == 1319
    for task in tasks:
        env.reset(task)
        assert env.step(env.expert_reply()).success, task.id


def test_humaneval_code_extraction():
    problem = HumanEvalEnv.load_tasks()[0].data
    fenced = "Here:\n```python\ndef helper():\n    pass\n```\nand\n```python\ndef has_close_elements(n, t):\n    return 1\n```"
    assert extract_code(fenced, "has_close_elements").startswith("def has_close_elements")
    program = build_program(problem, extract_code(fenced, "has_close_elements"))
    assert program.startswith(problem["prompt"]) and program.rstrip().endswith("check(has_close_elements)")
    body = "    return False\n"  # a bare completion of the body, as in the original setting
    assert build_program(problem, body).startswith(problem["prompt"] + body)
    assert extract_code("  ", "f") is None


def test_humaneval_runs_in_sandbox():
    tasks = HumanEvalEnv.load_tasks()
    assert len(tasks) == 164
    env = HumanEvalEnv(timeout=5)
    for task in tasks[:3] + tasks[-2:]:  # canonical solutions pass
        env.reset(task)
        step = env.step(env.expert_reply())
        assert step.success and step.reward == 1.0, (task.id, step.info)
    task = tasks[0]
    env.reset(task)
    wrong = env.step("```python\ndef has_close_elements(numbers, threshold):\n    return False\n```")
    assert not wrong.success and wrong.info["result"].startswith("failed: AssertionError"), wrong.info
    broken = env.step("```python\ndef has_close_elements(numbers, threshold)\n    return\n```")
    assert not broken.success and broken.info["valid_action"] is False, broken.info
    # the program runs in the sandbox's own files: what it writes never reaches the host
    marker = f"/tmp/humaneval-marker-{os.getpid()}"
    passed, result = run_program(f"open({marker!r}, 'w').write('x')\n", timeout=5)
    assert passed and not os.path.exists(marker), result
    passed, result = run_program(f"import os\nassert not os.path.exists({REPO_ROOT!r})\n", timeout=5)
    assert passed, result  # nor does it see the host's files
    # a solution that exits early with status 0 skips the tests: it must not pass
    early = env.step("```python\nimport sys\nsys.exit(0)\n```")
    assert not early.success, early.info


def test_humaneval_infinite_loop_times_out():
    passed, result = run_program("while True:\n    pass\n", timeout=2)
    assert not passed and result == "timed out after 2 s"


def write_quiz(path):
    records = [
        {"question": "2 + 2 = ?", "choices": ["3", "4", "5", "6"], "answer": 1},
        {"question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": "A", "subject": "geo"},
        {"question": "Largest planet?", "choices": ["Mars", "Jupiter", "Venus"], "answer": "Jupiter"},
        {"question": "H2O is?", "choices": ["water", "salt", "gold", "air"], "answer": 0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_multiple_choice(tmp_path):
    path = tmp_path / "quiz.jsonl"
    write_quiz(path)
    tasks = MCEnv.load_tasks(str(path))
    assert [t.data["answer"] for t in tasks] == [1, 0, 1, 0]
    env = MCEnv(examples=[tasks[0].data])
    messages = env.reset(tasks[1])
    assert messages[1]["content"] == "Answer: B" and "about geo" in messages[2]["content"]
    assert "A. Paris\nB. Rome" in messages[2]["content"]
    for reply, reward, finish in [("A", 1.0, "answered"), ("The answer is (A).", 1.0, "answered"),
                                  ("paris", 1.0, "answered"), ("B) Rome", 0.0, "answered"),
                                  ("A dog.", 0.0, "invalid_format")]:
        env.reset(tasks[1])
        step = env.step(reply)
        assert (step.reward, step.finish) == (reward, finish), reply
    env.reset(tasks[1])
    assert env.step("Answer: D").info["valid_action"] is False  # only A and B exist
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 7}) + "\n")
    with pytest.raises(SystemExit, match="bad.jsonl:1"):
        MCEnv.load_tasks(str(bad))


def run_eval(*args):
    out = subprocess.run([sys.executable, "05_eval.py", *args], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_eval_end_to_end_expert(tmp_path):
    quiz = tmp_path / "quiz.jsonl"
    write_quiz(quiz)
    out_dir = tmp_path / "eval"
    args = ["--agent=expert", "--tasks=gsm8k,humaneval,db,quiz", "--limit=3", "--workers=2",
            f"--mc_files={{'quiz': '{quiz}'}}", "--mc_shots=1", f"--out_dir={out_dir}"]
    stdout = run_eval(*args)
    results = json.loads((out_dir / "results.json").read_text())
    tasks = results["tasks"]
    assert set(tasks) == {"gsm8k", "humaneval", "db", "quiz"}
    for name in ("gsm8k", "humaneval", "quiz"):  # reference answers: full score
        assert tasks[name]["score"] == 100.0 and tasks[name]["n"] == 3, (name, tasks[name])
    assert tasks["db"]["n"] == 3 and tasks["db"]["group"] == "held_in"
    # the std test set, named with its size; AgentBench's 128 new tokens per reply; an interval
    assert (tasks["db"]["set"], tasks["db"]["set_size"], tasks["db"]["max_reply_tokens"]) == ("db:std", 300, 128)
    assert tasks["gsm8k"]["max_reply_tokens"] == 512 and tasks["gsm8k"]["ci_low"] < 100 == tasks["gsm8k"]["ci_high"]
    assert results["overall"]["general"] == pytest.approx((100 / 52.82 + 100 / 35.64) / 2, rel=1e-3)
    assert "quiz" not in results["overall_tasks"]["general"]  # no paper figure, no --baseline
    lines = (out_dir / "episodes" / "gsm8k.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["agent"]["kind"] == "expert"
    assert (out_dir / "results.png").stat().st_size > 0
    assert "| gsm8k | general | 52.8 | 100.0 |" in (out_dir / "results.md").read_text()
    assert "overall: held_in" in stdout
    # resume: nothing reruns; a base run gives the quiz a divisor; --compare adds a column
    base = tmp_path / "base_results.json"
    base.write_text(json.dumps({"label": "base", "tasks": {"quiz": {"score": 50.0, "n": 3, "group": "general", "errors": {}}}}))
    stdout = run_eval(*args, f"--baseline={base}", f"--compare={base}")
    assert "3 already in" in stdout and "0 to run" in stdout
    results = json.loads((out_dir / "results.json").read_text())
    assert results["tasks"]["quiz"]["baseline"] == 50.0 and "quiz" in results["overall_tasks"]["general"]
    assert "| expert | base |" in (out_dir / "results.md").read_text()
