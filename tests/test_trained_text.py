"""Exactly which text is trained: only what the agent itself wrote.

A real episode of each held-in environment (the expert through agentune.rollout, as 01_collect.py
runs it) goes through 02_filter.py; the tokens the training record marks for the loss, decoded,
must be exactly the agent's replies, each closed by the template's end-of-turn, and never the
environment's prompt, its one-shot example ("Ok.", the solved example's replies) or a header.
Also the per-turn loss flags of AgentInstruct-style input."""
import importlib.util
import json
import os
import runpy
import sys

import pytest

from agentune.agents import make_agent
from agentune.chat import encode
from agentune.envs import env_class
from agentune.paths import data_path
from agentune.records import DataError, to_messages
from agentune.rollout import run_episode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trained_texts(tokenizer, messages):
    """The trained tokens of a conversation, decoded, one string per contiguous trained span."""
    ids, mask = encode(tokenizer, messages)
    spans, current = [], []
    for token, trained in zip(ids, mask):
        if trained:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


def held_in_episode(env_name):
    """One finished expert episode of the env (a real rollout), or a skip when it can't run."""
    if env_name == "os":
        from agentune.sandbox import Sandbox
        ok, why = Sandbox.available()
        if not ok:
            pytest.skip(why)
        task = next(t for t in env_class("os").load_tasks(split="dev") if t.data["example"] is not None)
    elif env_name == "db":
        task = next(t for t in env_class("db").load_tasks(split="dev") if t.data["type"][0] == "UPDATE")
    else:
        if importlib.util.find_spec("textworld") is None:
            pytest.skip("textworld is not installed")
        from agentune.envs.alfworld_env import ALFWorldEnv
        games = ALFWorldEnv.load_tasks(split="valid_seen")
        task = min((t for t in games if t.data["example"] == "examine"),
                   key=lambda t: (os.path.getsize(t.data["gamefile"]), t.id))
    env = env_class(env_name)()
    try:
        record = run_episode(env, make_agent("expert"), task, env.max_turns)
    finally:
        env.close()
    assert record["success"], (record["finish"], record.get("error"))
    return record


@pytest.mark.parametrize("env_name", ["os", "db", "alfworld"])
def test_only_the_agents_replies_are_trained(env_name, tmp_path, base_tokenizer):
    record = held_in_episode(env_name)
    raw = tmp_path / f"{env_name}.jsonl"
    raw.write_text(json.dumps(record) + "\n")
    argv = sys.argv
    # (decontamination is not under test here: some dev tasks are near-copies of std ones)
    sys.argv = ["02_filter.py", f"--inputs={raw}", f"--out_dir={tmp_path / 'filtered'}", "--seq_len=8192",
                f"--eval_tasks={data_path('gsm8k', 'test.jsonl')}"]
    try:
        runpy.run_path(os.path.join(ROOT, "02_filter.py"), run_name="__main__")
    finally:
        sys.argv = argv
    [kept] = [json.loads(line) for line in (tmp_path / "filtered" / "agent.jsonl").read_text().splitlines()]

    agent_replies = [record["messages"][i]["content"] for i in record["agent_messages"]]
    assert len(agent_replies) == record["turns"] >= 1
    example_replies = [m["content"] for i, m in enumerate(record["messages"])
                       if m["role"] == "assistant" and i not in record["agent_messages"]]
    assert example_replies, "every held-in env's prompt has assistant turns of its own"
    # 02 writes the flags explicitly: true on the agent's replies, false on the prompt's
    flags = [m["loss"] for m in kept["messages"] if m["role"] == "assistant"]
    assert flags == [i in record["agent_messages"] for i, m in enumerate(record["messages"])
                     if m["role"] == "assistant"]
    expected = [reply.strip() + "<|im_end|>" for reply in agent_replies]
    assert trained_texts(base_tokenizer, to_messages(kept, "kept")) == expected
    # the raw episode record read directly (04_train.py, heldout_loss.py) trains the same text
    assert trained_texts(base_tokenizer, to_messages(record, "raw")) == expected


def test_loss_flags_are_json_booleans_on_assistant_turns():
    convo = lambda **flags: {"conversations": [{"from": "human", "value": "q", "loss": flags.get("human")},
                                               {"from": "gpt", "value": "a", "loss": flags.get("gpt")}]}
    with pytest.raises(DataError, match=r"x.jsonl:3: turn 1: 'loss' is 'false', not a JSON boolean"):
        to_messages(convo(gpt="false"), "x.jsonl:3")
    with pytest.raises(DataError, match=r"x.jsonl:4: turn 0: 'loss' is true on a user turn"):
        to_messages(convo(human=True), "x.jsonl:4")
    with pytest.raises(DataError, match="'loss' is 1"):
        to_messages({"messages": [{"role": "user", "content": "q"},
                                  {"role": "assistant", "content": "a", "loss": 1}]}, "y")
    assert [m["loss"] for m in to_messages(convo(human=False, gpt=True), "z")] == [False, True]


def test_first_turn_assistant_trains_no_header_or_default_system_prompt(base_tokenizer):
    messages = to_messages({"messages": [{"role": "assistant", "content": "Hello there."},
                                         {"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "Bye."}]}, "w")
    assert trained_texts(base_tokenizer, messages) == ["Hello there.<|im_end|>", "Bye.<|im_end|>"]
