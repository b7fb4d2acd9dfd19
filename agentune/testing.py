"""Helpers for the tests and benchmarks: where the repository is, replaying an env's expert, and
(agentune.chat_server) a local OpenAI-compatible server."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


def play_expert(env, task):
    """Reset env on task and replay its expert to the end: (the prompt messages, the last step)."""
    messages = env.reset(task)
    for _ in range(env.max_turns):
        step = env.step(env.expert_reply())
        if step.done:
            return messages, step
    raise AssertionError(f"{task.id}: the expert did not finish in {env.max_turns} turns")
