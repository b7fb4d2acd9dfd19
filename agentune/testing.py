"""Helpers for the tests and benchmarks: where the repository is, loading a numbered stage script
as a module, replaying an env's expert, and (agentune.chat_server) a local OpenAI-compatible server."""
import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


def load_stage(filename):
    """Import a numbered stage script (e.g. '04_train.py') as a module without running it."""
    path = os.path.join(REPO, filename)
    spec = importlib.util.spec_from_file_location(filename[:-3].replace("0", "stage", 1), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def play_expert(env, task):
    """Reset env on task and replay its expert to the end: (the prompt messages, the last step)."""
    messages = env.reset(task)
    for _ in range(env.max_turns):
        step = env.step(env.expert_reply())
        if step.done:
            return messages, step
    raise AssertionError(f"{task.id}: the expert did not finish in {env.max_turns} turns")
