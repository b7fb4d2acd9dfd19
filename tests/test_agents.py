"""The agents: the openai agent against a local OpenAI-compatible server that scripts replies and
injects failures; the hf agent generating with the real base model, batched."""
import threading

import pytest

from agentune.agents import ContextLimit, LLMError, make_agent
from agentune.envs import env_class
from agentune.rollout import run_episodes
from agentune.chat_server import ChatServer

HELLO = [{"role": "user", "content": "hello there"}]


def openai_agent(server, **options):
    # retries and their backoff are the openai client's own (0.5 s doubling, with jitter)
    return make_agent("openai", model="teacher", base_url=server.url, **options)


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
        agent = make_agent("openai", model="teacher", base_url=server.url + "/wrong")
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
def one_thread():
    import torch
    # the test machines share 2 cores between many jobs: one thread is several times faster
    # there than torch's oversubscribed default
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hf_agent(one_thread):
    agent = make_agent("hf", max_tokens=8, dtype="float32")  # the real base model, greedy
    yield agent
    agent.close()


@pytest.fixture(scope="module")
def tiny_agent(one_thread, tiny_model_dir):
    agent = make_agent("hf", model=tiny_model_dir, max_tokens=12, dtype="float32")
    yield agent
    agent.close()


def test_hf_agent_batches_concurrent_episodes(tmp_path, hf_agent):
    """Two db episodes at once are generated in one batch; each reply must equal plain greedy
    model.generate on that conversation alone."""
    db = env_class("db")
    tasks = db.load_tasks()[:2]
    hf_agent.stats["max_rows"] = 0
    summary = run_episodes("db", tasks, hf_agent, str(tmp_path / "db.jsonl"), workers=2, max_turns=1)
    assert summary["new"] == 2
    assert hf_agent.stats["max_rows"] == 2  # the two episodes' first turns were decoded together
    from agentune.records import read_jsonl
    records = [r for _, r in read_jsonl(tmp_path / "db.jsonl")]
    assert {r["agent"]["kind"] for r in records} == {"hf"}
    for record in records:
        assert record["finish"] in ("invalid_format", "max_turns", "answered")
        assert record["usage"]["completion_tokens"] <= 8 and record["usage"]["prompt_tokens"] > 100
        prompt, reply = record["messages"][:3], record["messages"][3]
        assert reply["role"] == "assistant" and reply["content"].strip()
        assert hf_agent.reply_plain(prompt).content == reply["content"]


@pytest.mark.parametrize("new,capacity,decoding", [((1, 1, 1), 40, 3), ((1, 1, 1), 64, 3), ((1, 4, 2), 64, 3),
                                                    ((1, 3, 9), 64, 2), ((5, 9, 3), 40, 0)])
def test_cached_gqa_equals_transformers_sdpa(new, capacity, decoding):
    """The hf agent's step attention (the new tokens of all rows as one flat sequence: the first
    `decoding` rows as one group laid out per row, each later row, prefilling, a group of its own;
    grouped queries over the rows' keys: the whole capacity, as SlotCache hands it, or a strided
    view) equals transformers' sdpa path run on each row alone, in fp32."""
    import torch
    from transformers import AttentionInterface
    from agentune.attention import CACHED_GQA, register_cached_gqa
    register_cached_gqa()
    torch.manual_seed(0)
    rows, heads, kv_heads, dim, width = 3, 6, 2, 16, 40
    cache = torch.randn(2, rows, kv_heads, capacity, dim)
    key, value = cache[0, :, :, :width], cache[1, :, :, :width]  # strided when the capacity is larger
    lengths = [width, 17, 29]  # each row's last new position + 1
    row_of = torch.tensor([i for i, n in enumerate(new) for _ in range(n)])
    col_of = torch.tensor([j for n in new for j in range(n)])
    positions = torch.tensor(lengths)[row_of] - torch.tensor(new)[row_of] + col_of
    query = torch.randn(1, heads, len(row_of), dim)

    def bias(first, last_row):  # rows first..last_row - 1 as one group (a row's padding queries may see anything)
        span = max(new[first:last_row])
        last = torch.full((last_row - first, span), width)
        mine = (row_of >= first) & (row_of < last_row)
        last[row_of[mine] - first, col_of[mine]] = positions[mine]
        return torch.zeros(last_row - first, 1, span, width).masked_fill_(
            torch.arange(width) > last[:, None, :, None], float("-inf"))
    groups, start = [], 0
    for first, last_row in ([(0, decoding)] if decoding else []) + [(i, i + 1) for i in range(decoding, rows)]:
        end = start + sum(new[first:last_row])
        groups.append((slice(first, last_row), slice(start, end), row_of[start:end] - first, col_of[start:end],
                       bias(first, last_row)))
        start = end

    class Layer(torch.nn.Module):
        num_key_value_groups, is_causal, training = heads // kv_heads, True, False
    ours, _ = AttentionInterface()[CACHED_GQA](Layer(), query, key, value, groups[0][4], scaling=0.25, groups=groups)
    assert ours.shape == (1, len(row_of), heads, dim)
    for i in range(rows):
        mine = row_of == i
        mask = (torch.arange(width)[None, :] <= positions[mine][:, None])[None, None]
        theirs, _ = AttentionInterface()["sdpa"](Layer(), query[:, :, mine], key[i:i + 1], value[i:i + 1], mask,
                                                 scaling=0.25)
        torch.testing.assert_close(ours[:, mine], theirs, rtol=1e-5, atol=1e-6)


def test_packed_cpu_linears_equal_plain_ones():
    """pack_cpu_linears (the hf agent on a bf16 CPU) changes how the weights are laid out, not the
    model's outputs."""
    import torch
    from agentune.model import pack_cpu_linears
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 32, bias=False))
    model = model.to(torch.bfloat16).eval()
    x = torch.randn(2, 5, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        plain = model(x)
        packed = pack_cpu_linears(model)
        if not packed:
            pytest.skip("this PyTorch build has no oneDNN bf16 linear")
        assert packed == 2
        assert torch.equal(model(x), plain)


def test_hf_agent_context_limit(hf_agent):
    words = " ".join(["word"] * hf_agent.max_positions)
    with pytest.raises(ContextLimit, match="exceeds the model's"):
        hf_agent.reply([{"role": "user", "content": words}])


INSTRUCTION = [{"role": "system", "content": "You are a household agent. " * 20},
               {"role": "user", "content": "Here is one example. Go to the desk, take the pen."},
               {"role": "assistant", "content": "THOUGHT: the pen is on the desk.\nACTION: go to desk 1"}]


def test_hf_agent_multi_turn_cache_gives_plain_greedy_replies(tiny_agent, monkeypatch):
    """Three episodes at once, four turns each: every turn prefills only the new observation on
    top of the episode's cache, the first turns share the cached instruction + example, the
    cache's capacity grows with the longest row (shrinking: test_slot_cache_capacity_follows_the_longest_row),
    and every reply equals plain model.generate on the whole conversation."""
    seen, capacities = {}, set()
    monkeypatch.setattr(tiny_agent.cache, "STEP", 4)  # small steps: the capacity grows within replies
    fit = tiny_agent.cache.fit
    monkeypatch.setattr(tiny_agent.cache, "fit", lambda length, used: (fit(length, used), capacities.add(tiny_agent.cache.capacity)))

    def episode(k):
        tiny_agent.start_episode()
        task = f"Here is your task {k}: put a pen in drawer {k}."
        messages = INSTRUCTION + [{"role": "user", "content": task}]
        for turn in range(4):
            reply = tiny_agent.reply(messages)
            seen[k, turn] = (list(messages), reply)
            messages = messages + [{"role": "assistant", "content": reply.content},
                                   {"role": "user", "content": f"Observation {turn}: nothing happens {k}."}]

    before = dict(tiny_agent.stats)
    threads = [threading.Thread(target=episode, args=(k,)) for k in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    stats = {key: tiny_agent.stats[key] - before[key] for key in ("prefilled", "reused")}
    prompt_tokens = sum(reply.usage["prompt_tokens"] for _, reply in seen.values())
    assert stats["prefilled"] + stats["reused"] == prompt_tokens
    assert stats["reused"] > 0.6 * prompt_tokens  # later turns and first turns after the first episode's
    assert len(capacities) > 4  # decode steps read a capacity that changed as the rows grew
    for messages, reply in seen.values():
        assert reply.usage["completion_tokens"] <= 12
        assert reply.content == tiny_agent.reply_plain(messages).content


def test_hf_agent_drafts_never_change_replies(tiny_agent, monkeypatch):
    """A decode step keeps a drafted token only where greedy decoding picks it: with drafts that
    go wrong after their first token, rows checking drafts of different lengths side by side, the
    replies still equal plain model.generate on the whole conversation."""
    draft = tiny_agent._draft
    monkeypatch.setattr(tiny_agent, "_draft", lambda row, room: [t if j == 0 else (t * 7 + j) % 1000
                                                                 for j, t in enumerate(draft(row, room))])
    seen = {}

    def episode(k):
        tiny_agent.start_episode()
        messages = INSTRUCTION + [{"role": "user", "content": f"Task {k}: " + "open drawer 2, " * k}]
        seen[k] = (messages, tiny_agent.reply(messages))

    before = dict(tiny_agent.stats)
    threads = [threading.Thread(target=episode, args=(k,)) for k in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    drafted, accepted = (tiny_agent.stats[key] - before[key] for key in ("drafted", "accepted"))
    assert drafted > accepted > 0
    for messages, reply in seen.values():
        assert reply.content == tiny_agent.reply_plain(messages).content


def test_slot_cache_capacity_follows_the_longest_row():
    """The cache grows STEP tokens at a time and gives back what lies over SLACK beyond the longest
    row, keeping every row's keys/values; a resize copies only the slots in use, into the other of
    two storages that take turns (no allocation once they are large enough)."""
    import types
    import torch
    from agentune.agents import SlotCache
    config = types.SimpleNamespace(num_key_value_heads=2, head_dim=4, num_hidden_layers=3)
    cache = SlotCache(config, torch.float32, "cpu")
    cache.reserve(2, 100)
    assert cache.buf.shape == (3, 2, 2, 2, 128, 4)
    cache.buf.normal_()
    kept = cache.buf[..., :100, :].clone()
    cache.fit(700)
    assert cache.capacity == 768 and torch.equal(cache.buf[..., :100, :], kept)
    assert not cache.buf[..., 128:, :].any()  # new room in a new storage is zeros: masked, and never NaN
    cache.fit(400)  # 768 - 512 is not beyond the slack
    assert cache.capacity == 768
    storages = {cache.storage.data_ptr(), cache.spare.data_ptr()}
    cache.fit(100)
    assert cache.capacity == 128 and cache.buf.is_contiguous() and torch.equal(cache.buf[..., :100, :], kept)
    cache.buf[:, :, 1].fill_(float("nan"))  # a finished row's slot: not copied by the next resize
    cache.fit(300, used=1)  # one row left in flight
    assert cache.buf.shape == (3, 2, 2, 2, 384, 4) and torch.equal(cache.buf[:, :, :1, :, :100], kept[:, :, :1])
    assert cache.buf.isfinite().all()  # what the copy left alone is an earlier layout's keys/values or zeros
    assert {cache.storage.data_ptr(), cache.spare.data_ptr()} == storages  # the same two storages
    assert cache.buf.data_ptr() == cache.storage.data_ptr()
    cache.reserve(3, 200, used=1)  # two rows admitted: a third slot
    assert cache.buf.shape == (3, 2, 3, 2, 384, 4) and torch.equal(cache.buf[:, :, :1, :, :100], kept[:, :, :1])


def test_conversation_keeps_its_keys_and_values_in_place_while_it_has_room():
    import torch
    from agentune.agents import Conversation
    conversation = Conversation()
    first = torch.randn(3, 2, 2, 100, 4)
    conversation.keep(range(100), first)
    storage = conversation.storage
    assert torch.equal(conversation.kv, first) and conversation.ids == list(range(100))
    assert storage.shape[3] == 100 + Conversation.ROOM
    second = torch.randn(3, 2, 2, 300, 4)
    conversation.keep(range(300), second)  # a later turn: a copy into the same storage
    assert conversation.storage is storage and torch.equal(conversation.kv, second)
    third = torch.randn(3, 2, 2, 700, 4)
    conversation.keep(range(700), third)  # beyond its room: a new storage
    assert conversation.storage.shape[3] == 700 + Conversation.ROOM and torch.equal(conversation.kv, third)


def test_hf_agent_sampling_follows_its_seed(one_thread, tiny_model_dir):
    """Sampled replies depend on the agent's seed only: the same seed draws the same reply, another
    seed other replies (two sampled attempts must not repeat each other)."""
    def sample(seed):
        agent = make_agent("hf", model=tiny_model_dir, max_tokens=12, dtype="float32", temperature=1.0, seed=seed)
        try:
            return [agent.reply(INSTRUCTION[:2] + [{"role": "user", "content": f"task {k}"}]).content for k in range(3)]
        finally:
            agent.close()
    first = sample(1)
    assert sample(1) == first
    assert sample(2) != first


def test_hf_agent_continuous_batching_frees_slots_at_once(tiny_agent):
    """A short reply started next to a long one returns at once, and a request queued after it
    joins the running batch (finishing long before the long reply)."""
    from concurrent.futures import Future

    from agentune.agents import Conversation, _Request
    ids = tiny_agent.encode(INSTRUCTION)
    long, short = Future(), Future()
    tiny_agent.requests.put(_Request(ids, 400, long, Conversation()))
    tiny_agent.requests.put(_Request(ids[:-3], 2, short, Conversation()))
    assert short.result(timeout=60).usage["completion_tokens"] <= 2
    assert not long.done()
    late = Future()
    tiny_agent.requests.put(_Request(ids[:-5], 3, late, Conversation()))
    assert late.result(timeout=60).usage["completion_tokens"] <= 3
    assert not long.done()
    assert long.result(timeout=120).usage["completion_tokens"] <= 400


def test_hf_agent_stop_sequences(tiny_model_dir, one_thread):
    """A stop sequence ends the reply early and is not part of it."""
    messages = INSTRUCTION + [{"role": "user", "content": "Your task: put a pen in drawer."}]
    plain = make_agent("hf", model=tiny_model_dir, max_tokens=16, dtype="float32")
    full = plain.reply(messages)
    plain.close()
    stop = full.content[len(full.content) // 2:][:3]
    assert stop, full.content
    stopped = make_agent("hf", model=tiny_model_dir, max_tokens=16, dtype="float32", stop=[stop])
    reply = stopped.reply(messages)
    stopped.close()
    assert reply.content == full.content.split(stop)[0]
    assert reply.usage["completion_tokens"] < full.usage["completion_tokens"]


def test_release_openmp_threads_lets_the_callers_workers_go():
    """HFAgent releases the OpenMP team of the thread that loaded its model before its generation
    thread runs the forwards (agentune.agents.release_openmp_threads: with two teams on a small CPU
    libgomp stops spin-waiting, and each small op of the generation thread got ~10x slower). Checked
    in a fresh process: the caller's worker threads exit, and a thread computes as before."""
    import subprocess
    import sys
    script = """
import os, threading, time, torch
from agentune.agents import release_openmp_threads
torch.set_num_threads(2)
x = torch.randn(200000)
before = x * 2  # a parallel region: this thread's OpenMP team starts
tasks = lambda: len(os.listdir("/proc/self/task"))
with_team = tasks()
released = release_openmp_threads()
for _ in range(500):  # the worker leaves on its own time
    if tasks() < with_team:
        break
    time.sleep(0.01)
print(with_team, tasks(), released)
out = {}
worker = threading.Thread(target=lambda: out.update(y=x * 2))
worker.start(); worker.join()
assert torch.equal(out["y"], before)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with_team, after, released = run.stdout.split()
    if released != "True":
        pytest.skip("this PyTorch build's OpenMP runtime has no omp_pause_resource_all")
    assert int(after) == int(with_team) - 1  # the team's one worker thread is gone


def test_hf_agent_leaves_a_core_to_workers_busy_outside_generation(tiny_model_dir):
    """On a CPU the generation thread computes with one OpenMP thread fewer for each worker thread
    busy outside generation (its env, its tokenizer) in the last OUTSIDE_S seconds: HFAgent._share_cores.
    Checked with torch's own thread count inside the layers; on close the agent puts back the count
    threads started later get, and removes its hooks."""
    import threading
    import time

    import torch

    from agentune.agents import OUTSIDE_S
    from agentune.model import decoder_layers
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        agent = make_agent("hf", model=tiny_model_dir, max_tokens=4, dtype="float32")
        inside = []  # the generation thread's thread count after each decoder layer
        for layer in decoder_layers(agent.net):
            layer.register_forward_hook(lambda *_: inside.append(torch.get_num_threads()))
        messages = INSTRUCTION + [{"role": "user", "content": "Your task: put a pen in drawer."}]

        def reply(another_worker_since=None):
            agent.outside.pop(-1, None)
            if another_worker_since is not None:
                agent.outside[-1] = another_worker_since  # a worker thread marked as its env's
            inside.clear()
            steps, fewer = agent.stats["steps"], agent.stats["fewer_threads_steps"]
            agent.reply(messages)
            return set(inside), agent.stats["steps"] - steps, agent.stats["fewer_threads_steps"] - fewer

        threads, steps, fewer = reply()                   # alone: this thread queued its request
        assert threads == {2} and steps >= 1 and fewer == 0
        threads, steps, fewer = reply(time.perf_counter() - OUTSIDE_S)  # a worker's mark that expired
        assert threads == {2} and steps >= 1 and fewer == 0
        threads, steps, fewer = reply(time.perf_counter())  # another worker busy: a core left to it
        assert threads == {1} and steps >= 1 and fewer == steps
        agent.close()  # on one thread: it puts back the count threads started later get, and its hooks go
        assert not any(layer._forward_pre_hooks for layer in agent.net.modules())
        later = {}
        thread = threading.Thread(target=lambda: later.update(threads=torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later["threads"] == 2
    finally:
        torch.set_num_threads(before)
