"""The agents: the openai agent against a local OpenAI-compatible server that scripts replies and
injects failures; the hf agent generating with the real base model, batched."""
import threading

import pytest

from agentune.agents import ContextLimit, LLMError, make_agent
from agentune.envs import env_class
from agentune.rollout import run_episodes
from openai_test_server import ChatServer

HELLO = [{"role": "user", "content": "hello there"}]


def openai_agent(server, **options):
    # tiny backoff so retries cost milliseconds
    return make_agent("openai", model="teacher", base_url=server.url,
                      **{"backoff_s": 0.01, "max_backoff_s": 0.05, **options})


def test_openai_sends_sampling_and_records_usage():
    with ChatServer(replies=["Action: Answer\nFinal Answer: [1]"]) as server:
        agent = openai_agent(server, temperature=0.7, top_p=0.9, max_tokens=64)
        reply = agent.reply(HELLO, None)
    assert reply.content == "Action: Answer\nFinal Answer: [1]"
    assert reply.usage == {"prompt_tokens": 2, "completion_tokens": 5}  # the server counts words
    [body] = server.requests
    assert body["model"] == "teacher" and body["messages"] == HELLO
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.9, 64)
    assert agent.describe() == {"kind": "openai", "model": "teacher",
                                "sampling": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64}}


def test_openai_retries_429_500_disconnects_and_timeouts():
    faults = [429, 500, "disconnect", "timeout"]
    with ChatServer(replies=["fine"], faults=faults, hang_s=2.0) as server:
        reply = openai_agent(server, timeout_s=0.5).reply(HELLO, None)
    assert reply.content == "fine"
    assert len(server.requests) == len(faults) + 1


def test_openai_gives_up_after_bounded_retries():
    with ChatServer(faults=[500] * 10) as server:
        with pytest.raises(LLMError, match="gave up after 3 attempts"):
            openai_agent(server, max_retries=2).reply(HELLO, None)
        assert len(server.requests) == 3


def test_openai_does_not_retry_client_errors():
    with ChatServer() as server:
        agent = make_agent("openai", model="teacher", base_url=server.url + "/wrong", backoff_s=0.01)
        with pytest.raises(LLMError, match="NotFoundError"):
            agent.reply(HELLO, None)
        assert len(server.requests) == 1


def test_openai_context_overflow_is_context_limit():
    with ChatServer(faults=["context"]) as server:
        with pytest.raises(ContextLimit, match="maximum context length"):
            openai_agent(server).reply(HELLO, None)
        assert len(server.requests) == 1  # not retried: it would fail the same way


def test_openai_episode_budget():
    with ChatServer() as server:
        agent = openai_agent(server, max_calls=2)
        agent.start_episode()
        agent.reply(HELLO, None)
        agent.reply(HELLO, None)
        with pytest.raises(LLMError, match="budget spent: 2 calls"):
            agent.reply(HELLO, None)
        agent.start_episode()  # a new episode, a new budget
        agent.reply(HELLO, None)
        # tokens: each call costs 2 prompt + 1 completion tokens here
        agent = openai_agent(server, max_episode_tokens=5)
        agent.start_episode()
        agent.reply(HELLO, None)
        agent.reply(HELLO, None)
        with pytest.raises(LLMError, match="6 tokens"):
            agent.reply(HELLO, None)
        assert len(server.requests) == 5


def test_openai_budget_is_per_episode_per_thread():
    """Workers share one agent: one episode spending its budget must not stop the others."""
    with ChatServer(delay_s=0.05) as server:
        agent = openai_agent(server, max_calls=3)
        outcomes = []

        def episode():
            agent.start_episode()
            try:
                for _ in range(4):
                    agent.reply(HELLO, None)
            except LLMError:
                outcomes.append("budget")

        threads = [threading.Thread(target=episode) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert outcomes == ["budget"] * 4 and len(server.requests) == 12


@pytest.fixture(scope="module")
def hf_agent():
    import torch
    # the test machines share 2 cores between many jobs: one thread is several times faster
    # there than torch's oversubscribed default
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    agent = make_agent("hf", max_tokens=8)  # the real base model, greedy
    yield agent
    agent.close()
    torch.set_num_threads(threads)


def test_hf_agent_batches_concurrent_episodes(tmp_path, hf_agent):
    """Two db episodes at once go through one left-padded batch; each reply must equal what the
    model generates for that conversation alone (padding must not change greedy output)."""
    db = env_class("db")
    tasks = db.load_tasks()[:2]
    batches = []
    generate = hf_agent.generate
    hf_agent.generate = lambda prompts: batches.append(len(prompts)) or generate(prompts)
    try:
        summary = run_episodes("db", tasks, hf_agent, str(tmp_path / "db.jsonl"), workers=2, max_turns=1)
    finally:
        del hf_agent.generate
    assert summary["new"] == 2
    assert batches[0] == 2  # the two episodes' first turns were generated together
    from agentune.records import read_jsonl
    records = [r for _, r in read_jsonl(tmp_path / "db.jsonl")]
    assert {r["agent"]["kind"] for r in records} == {"hf"}
    for record in records:
        assert record["finish"] in ("invalid_format", "max_turns", "answered")
        assert record["usage"]["completion_tokens"] <= 8 and record["usage"]["prompt_tokens"] > 100
        prompt, reply = record["messages"][:3], record["messages"][3]
        assert reply["role"] == "assistant" and reply["content"].strip()
        assert hf_agent.reply(prompt).content == reply["content"]


def test_hf_agent_context_limit(hf_agent):
    words = " ".join(["word"] * hf_agent.max_positions)
    with pytest.raises(ContextLimit, match="exceeds the model's"):
        hf_agent.reply([{"role": "user", "content": words}])
