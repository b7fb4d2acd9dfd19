"""MT-Bench: two turns answered by the model, each graded by a judge endpoint (the local scripted
OpenAI-compatible server) with FastChat's single-answer prompts, and 05_eval.py end to end."""
import json
import subprocess
import sys

import pytest

from agentune import scoring
from agentune.envs.mtbench_env import MTBenchEnv, extract_rating
from agentune.paths import REPO_ROOT
from agentune.chat_server import ChatServer


def test_extract_rating():
    assert extract_rating("Good answer. Rating: [[8]]") == 8.0
    assert extract_rating("[[7.5]] and later [[3]]") == 7.5
    assert extract_rating("Rating: [6]") == 6.0  # FastChat's backup pattern
    assert extract_rating("I give it an eight.") is None


def play(env, task, answers):
    env.reset(task)
    first = env.step(answers[0])
    assert not first.done and first.observation == task.data["turns"][1]
    return env.step(answers[1])


def test_judged_episode():
    tasks = {t.data["category"]: t for t in MTBenchEnv.load_tasks()}
    assert len(MTBenchEnv.load_tasks()) == 80 and len(tasks) == 8
    with ChatServer(replies=["Helpful. Rating: [[8]]", "Weaker second answer: [7]",
                             "Correct. [[10]]", "Wrong. [[2]]", "no rating here", "none either"]) as server:
        env = MTBenchEnv(judge_model="judge", judge_base_url=server.url)
        writing = tasks["writing"]
        step = play(env, writing, ["A blog post.", "A rewrite."])
        assert step.done and step.reward == pytest.approx(0.75) and step.info["action"] == "ratings 8 7"
        turn1, turn2 = (r["messages"] for r in server.requests)
        assert turn1[0]["content"] == "You are a helpful assistant." and "[[rating]]" in turn1[1]["content"]
        assert "[Question]\n" + writing.data["turns"][0] in turn1[1]["content"] and "A blog post." in turn1[1]["content"]
        assert "focus on the assistant's answer to the second user question" in turn2[0]["content"]
        assert "### Assistant A:\nA rewrite." in turn2[1]["content"]
        math = tasks["math"]  # reference-based prompts with GPT-4's answers
        step = play(env, math, ["x = 1", "x = 2"])
        assert step.reward == pytest.approx(0.6)
        turn1, turn2 = (r["messages"] for r in server.requests[2:4])
        assert math.data["reference"][0] in turn1[1]["content"] and "[The Start of Reference Answer]" in turn1[1]["content"]
        assert "### Reference answer:\n" + math.data["reference"][1] in turn2[1]["content"]
        assert all(r["temperature"] == 0 for r in server.requests)
        with pytest.raises(RuntimeError, match="no \\[\\[rating\\]\\]"):  # ends as env_error
            play(env, writing, ["a", "b"])
    records = [{"env": "mtbench", "reward": 0.75, "finish": "answered"},
               {"env": "mtbench", "reward": 0.6, "finish": "answered"},
               {"env": "mtbench", "reward": 0.0, "finish": "env_error"}]
    assert scoring.task_score(records) == pytest.approx(6.75)  # 1-10 scale, unjudged left out


def test_eval_with_judge(tmp_path):
    def reply(messages):
        if "impartial judge" in messages[0]["content"] + messages[-1]["content"]:
            return "Rating: [[9]]" if "Assistant A's Conversation" in messages[-1]["content"] else "Rating: [[6]]"
        return f"My answer to: {messages[-1]['content'][:20]}"

    with ChatServer(reply_fn=reply) as server:
        out_dir = tmp_path / "eval"
        out = subprocess.run([sys.executable, "05_eval.py", "--agent=openai", "--model=test",
                              f"--base_url={server.url}", "--tasks=mtbench", "--limit=3", "--workers=2",
                              "--judge_model=judge", f"--judge_base_url={server.url}", f"--out_dir={out_dir}"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads((out_dir / "results.json").read_text())
    task = results["tasks"]["mtbench"]
    assert task["n"] == 3 and task["score"] == pytest.approx(7.5) and task["group"] == "general"
    assert results["overall"]["general"] == pytest.approx(7.5 / 7.338)
    # 3 questions: 2 model turns + 2 judgments each
    assert len(server.requests) == 12 and sum(r["model"] == "judge" for r in server.requests) == 6
