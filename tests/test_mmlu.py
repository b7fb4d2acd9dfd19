"""MMLU 5-shot: the harness's prompt, letter scoring, and 05_eval.py with the expert: a --limit
spread evenly over subjects, accuracy per category, HotpotQA alongside in its group."""
import json
import subprocess
import sys

from agentune.envs.mmlu_env import MMLUEnv, categories
from agentune.paths import REPO_ROOT


def test_prompt_and_scoring():
    tasks = MMLUEnv.load_tasks()
    assert len(tasks) == 14042 and len({t.data["subject"] for t in tasks}) == 57
    assert tasks[0].id == "abstract_algebra-0" and len(set(t.id for t in tasks)) == len(tasks)
    assert set(categories().values()) == {"STEM", "humanities", "social sciences", "other (business, health, misc.)"}
    env = MMLUEnv(shots=5)
    task = next(t for t in tasks if t.data["subject"] == "high_school_us_history")
    messages = env.reset(task)
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 5 + ["user"]
    assert messages[0]["content"].startswith("The following is a multiple-choice question about high school us history.")
    assert messages[1]["content"].startswith("Question: ") and "\nA. " in messages[1]["content"]
    assert all(m["content"] in {f"Answer: {x}" for x in "ABCD"} for m in messages[2:-1:2])
    assert messages[-1]["content"] == "Question: " + task.prompt + "\n" + "\n".join(
        f"{x}. {c}" for x, c in zip("ABCD", task.data["choices"]))
    right = "ABCD"[task.data["answer"]]
    wrong = "ABCD"[(task.data["answer"] + 1) % 4]
    for reply, reward, finish in [(f"Answer: {right}", 1.0, "answered"), (right, 1.0, "answered"),
                                  (f"The answer is ({wrong}).", 0.0, "answered"), ("I'm not sure.", 0.0, "invalid_format")]:
        env.reset(task)
        step = env.step(reply)
        assert (step.reward, step.finish) == (reward, finish), reply
    assert len(MMLUEnv(shots=2).reset(task)) == 1 + 2 * 2 + 1


def test_eval_expert_hotpotqa_mmlu(tmp_path):
    out_dir = tmp_path / "eval"
    out = subprocess.run([sys.executable, "05_eval.py", "--agent=expert", "--tasks=hotpotqa,mmlu,mtbench",
                          "--limit=6", "--workers=2", f"--out_dir={out_dir}"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "mtbench: skipped: no judge" in out.stdout  # offline, never judged by the model itself
    results = json.loads((out_dir / "results.json").read_text())
    assert set(results["tasks"]) == {"hotpotqa", "mmlu"}
    for name, group in (("hotpotqa", "held_out"), ("mmlu", "general")):
        assert results["tasks"][name]["score"] == 100.0 and results["tasks"][name]["group"] == group
    assert results["overall"]["held_out"] == 100 / 34.96 and results["overall"]["general"] == 100 / 64.16
    episodes = [json.loads(line) for line in (out_dir / "episodes" / "mmlu.jsonl").read_text().splitlines()]
    subjects = {e["task_id"].rsplit("-", 1)[0] for e in episodes}
    assert len(episodes) == 6 and len(subjects) == 6  # one question from each of 6 subjects
    breakdown = results["tasks"]["mmlu"]["breakdown"]
    assert set(breakdown["subjects"]) == subjects and set(breakdown["categories"].values()) == {100.0}
    assert "by category: " in out.stdout
