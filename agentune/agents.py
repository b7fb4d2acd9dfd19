"""Agents: what answers the environment's prompt at each turn of an episode.

    agent = make_agent("openai", model="gpt-4", base_url="http://localhost:8000/v1", temperature=0)
    agent.start_episode()                      # resets the per-episode budget (the runner calls it)
    reply = agent.reply(messages, env)         # Reply(content, usage)

- expert: replays the task's reference solution (env.expert_reply()) through the real env.
- openai: any OpenAI-compatible chat endpoint (GPT-4, a vLLM server, ...), with bounded retries.
- hf: a local checkpoint in-process via transformers: continuous batching across the concurrent
  episodes, each keeping its KV cache across turns.

An agent is shared by all worker threads of a run, so per-episode state lives in a thread-local
(an episode runs start to end in one worker thread). Failures the runner must tell apart:
LLMError (the model side failed: endpoint down, retries exhausted, budget spent) and
ContextLimit (the conversation no longer fits the model's context window).
"""
import math
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

SAMPLING_KEYS = ("temperature", "top_p", "max_tokens")
OUTSIDE_S = 2.0  # how long a worker counts as busy outside generation after its last reply (HFAgent._share_cores)


@dataclass
class Reply:
    content: str
    usage: dict | None = None     # {"prompt_tokens", "completion_tokens"} when the model reports it


class LLMError(Exception):
    """The model could not produce a reply (the episode ends as llm_error)."""


class ContextLimit(Exception):
    """The conversation exceeds the model's context window (the episode ends as context_limit)."""


class Agent:
    kind = "base"
    model = ""
    sampling = {}

    def start_episode(self):
        pass

    def reply(self, messages, env) -> Reply:
        raise NotImplementedError

    def describe(self):
        return {"kind": self.kind, "model": self.model, "sampling": dict(self.sampling)}

    def close(self):
        pass


class ExpertAgent(Agent):
    """The task's reference solution, step by step, in the env's own thought/action format."""
    kind = "expert"

    def reply(self, messages, env):
        return Reply(env.expert_reply())


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible endpoints

def _is_context_error(error):
    """Servers word context overflow differently: OpenAI sets code=context_length_exceeded, vLLM
    says "maximum context length is N tokens", others "prompt is too long"."""
    text = f"{getattr(error, 'code', '') or ''} {error}".lower()
    return any(s in text for s in ("context_length", "context length", "maximum context",
                                   "prompt is too long", "too many tokens", "context window"))


class OpenAIAgent(Agent):
    kind = "openai"

    def __init__(self, model, base_url="", temperature=0.0, top_p=1.0, max_tokens=512,
                 timeout_s=120.0, max_retries=6, max_calls=100, max_episode_tokens=1_000_000):
        import openai
        if not model:
            raise SystemExit("the openai agent needs --model (the model name the endpoint serves)")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL", "")
        api_key = os.environ.get("OPENAI_API_KEY", "")
        if not base_url and not api_key:
            raise SystemExit("the openai agent needs OPENAI_API_KEY (api.openai.com) or --base_url "
                             "(any OpenAI-compatible server, e.g. vLLM: http://host:8000/v1)")
        # local servers (vLLM, llama.cpp) accept any key but the client insists on one. The client
        # retries what may pass (lost connections, timeouts, 408/409/429, 5xx) with exponential
        # backoff and jitter, honouring the server's retry-after
        self.client = openai.OpenAI(api_key=api_key or "EMPTY", base_url=base_url or None,
                                    timeout=timeout_s, max_retries=max_retries)
        self.model, self.base_url = model, base_url
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.max_retries = max_retries
        self.max_calls, self.max_episode_tokens = max_calls, max_episode_tokens
        self.episode = threading.local()
        self.openai = openai

    def start_episode(self):
        self.episode.calls, self.episode.tokens = 0, 0

    def reply(self, messages, env=None):
        if not hasattr(self.episode, "calls"):
            self.start_episode()
        calls, tokens = self.episode.calls, self.episode.tokens
        if calls >= self.max_calls or tokens >= self.max_episode_tokens:
            raise LLMError(f"episode budget spent: {calls} calls (max {self.max_calls}), "
                           f"{tokens} tokens (max {self.max_episode_tokens})")
        chat = [{"role": m["role"], "content": m["content"]} for m in messages]
        try:
            response = self.client.chat.completions.create(model=self.model, messages=chat, **self.sampling)
        except self.openai.OpenAIError as e:
            status = getattr(e, "status_code", None)
            # the statuses the client retried before giving up
            transient = isinstance(e, self.openai.APIConnectionError) or status in (408, 409, 429) \
                or (status or 0) >= 500
            if transient:
                raise LLMError(f"gave up after {self.max_retries + 1} attempts: {type(e).__name__}: {e}") from None
            if status and 400 <= status < 500 and _is_context_error(e):
                raise ContextLimit(str(e)) from None
            raise LLMError(f"{type(e).__name__}: {e}") from None  # auth, bad request, ...
        if not response.choices:
            raise LLMError("the endpoint returned no choices")
        choice = response.choices[0]
        usage = None
        if response.usage is not None:
            usage = {"prompt_tokens": response.usage.prompt_tokens or 0,
                     "completion_tokens": response.usage.completion_tokens or 0}
        self.episode.calls += 1
        self.episode.tokens += sum(usage.values()) if usage else 0
        return Reply(choice.message.content or "", usage)


# ---------------------------------------------------------------------------------------------
# Local checkpoints (transformers): continuous batching over per-episode KV caches

def common_prefix(a, b):
    """How many leading tokens the two id lists share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def cpu_has_bf16():
    """Whether the CPU multiplies bf16 natively (AMX on Sapphire Rapids, AVX-512 BF16 on Zen 4)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def release_openmp_threads():
    """Let the calling thread's OpenMP worker threads go (OpenMP 5's omp_pause_resource_all, soft;
    the next parallel region of this thread starts new ones). Returns whether a runtime did so.

    The hf agent loads its model in the caller's thread and runs every forward in its generation
    thread, each with its own OpenMP team. GNU libgomp stops spin-waiting between parallel regions
    once it manages more threads than there are cores, and wakes its workers through the kernel
    instead: on a 2-core CPU each small op of the generation thread then cost ~80 us instead of ~8,
    and a decode step ~90 ms instead of ~49 (the model's 1 row x 2,048 tokens; the same forward in
    the thread that loaded it ran at the fast speed). Releasing the loading thread's team avoids it."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:  # the OpenMP runtime torch loaded (libgomp, libomp, libiomp5)
            paths = sorted({line.split()[-1] for line in f
                            if line.split()[-1].rsplit("/", 1)[-1].startswith(("libgomp", "libomp", "libiomp"))})
    except OSError:
        return False
    for path in paths:
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        return pause(1) == 0  # 1 = omp_pause_soft
    return False


class SlotCache:
    """The keys and values of the conversations being generated, one row ("slot") each, in one
    buffer [layers, 2 (key, value), slots, kv heads, capacity, head dim]. Rows hold different
    lengths: a forward writes each row's new keys/values at that row's own positions and a mask
    (an additive bias) hides what lies beyond them, so a step copies no cache. The model's
    attention layers call update(), the one part of transformers' Cache they use when given
    explicit position ids and a 4-D mask.

    A step reads every row's whole capacity: then the rows' keys of a layer are one
    contiguous block, which the CPU's batched bf16 matmul reads in place (a view cut to a shorter
    width it copies first, which cost as much as the attention itself). So the capacity follows
    the longest row closely: it grows STEP tokens at a time and fit() gives back what lies more
    than SLACK tokens beyond. Either lays the buffer out anew in a second storage and copies into
    it the keys/values of the slots in use only (`used`, the first ones), so a run's last long
    replies, one or two rows, do not copy the slots of the rows that have finished every STEP
    tokens. On a CPU two storages take turns and only grow: allocating a large tensor costs a
    page fault per 4 kB, and zero-filling a new 8-slot x 2,176-token buffer took ~200 ms where the
    copy took ~27 (resizes took 5.5% of the generation thread's time in a 50-game ALFWorld run).
    A step reads only the slots of the rows in flight (the leading ones: one contiguous block), so
    the buffer keeps its slots once it has them."""
    STEP, SLACK = 128, 512

    def __init__(self, config, dtype, device, slots=1, capacity=STEP):
        import torch
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (config.num_hidden_layers, 2, slots, heads, capacity, head_dim)
        self.storage = torch.zeros(math.prod(shape), dtype=dtype, device=device)  # the buffer lives at its start
        self.buf = self.storage.view(shape)
        self.spare = None  # the other storage: the buffer's place before its last resize
        # what the current forward reads and writes: its rows, the new tokens' positions and rows (token i
        # goes to position pos[i] of row row_of[i]), the width handed to the attention
        self.rows, self.pos, self.row_of, self.width = slice(0, 0), None, None, 0

    @property
    def capacity(self):
        return self.buf.shape[4]

    def reserve(self, slots, length, used=None):
        """Room for `slots` slots of `length` tokens, keeping the first `used` slots' keys/values (all
        by default)."""
        if slots > self.buf.shape[2] or self._steps(length) > self.capacity:
            self._resize(max(slots, self.buf.shape[2]), max(self._steps(length), self.capacity), used)

    def fit(self, length, used=None):
        """Room for `length` tokens per row of the first `used` slots (all by default), giving back
        capacity far beyond it (no row may be longer)."""
        self.reserve(0, length, used)
        keep = self._steps(length)
        if self.capacity - keep > self.SLACK:
            self._resize(self.buf.shape[2], keep, used)

    def _resize(self, slots, capacity, used):
        """The buffer laid out for `slots` slots and `capacity` tokens in the spare storage, holding the
        first `used` slots' keys/values (all by default). What lies beyond a row's length is masked
        and need only be finite (0 x NaN is NaN): zeros, or keys/values of an earlier layout."""
        old, used = self.buf, self.buf.shape[2] if used is None else used
        shape = list(old.shape)
        shape[2], shape[4] = slots, capacity
        size, cpu = math.prod(shape), self.storage.device.type == "cpu"
        if self.spare is None or self.spare.numel() < size:
            self.spare = None  # let the smaller one go first
            self.spare = self.storage.new_zeros(size + size // 4 if cpu else size)  # room for a few more STEPs
        self.buf = self.spare[:size].view(shape)
        keep = min(capacity, old.shape[4])
        self.buf[:, :, :used, :, :keep] = old[:, :, :used, :, :keep]
        # a GPU's caching allocator makes new storages cheap there: it keeps one
        self.storage, self.spare = self.spare, (self.storage if cpu else None)

    def _steps(self, length):
        """length rounded up to whole STEPs: the capacity that holds it."""
        return -(-length // self.STEP) * self.STEP

    def update(self, key, value, layer_idx, *args, **kwargs):
        k, v = self.buf[layer_idx, 0, self.rows], self.buf[layer_idx, 1, self.rows]
        # a step's new tokens of all rows come as one sequence: each to its row and position
        k[self.row_of, :, self.pos] = key[0].transpose(0, 1)
        v[self.row_of, :, self.pos] = value[0].transpose(0, 1)
        return k[:, :, :self.width], v[:, :, :self.width]


class Conversation:
    """What the cache knows of one token sequence: its ids and their keys/values
    [layers, 2, kv heads, len(ids), head dim] (kv None: nothing cached yet)."""
    ROOM = 512  # tokens of room a new storage gets for the turns to come

    def __init__(self, ids=(), kv=None):
        self.ids, self.kv = list(ids), kv
        self.storage = None  # where keep() puts the keys/values: kv is its start

    def keep(self, ids, kv):
        """Hold these ids and a copy of their keys/values, in this conversation's storage while it has
        room (a new tensor each turn cost a page fault per 4 kB on a CPU: 5% of the generation
        thread's time in a 50-game ALFWorld run); a storage grows ROOM tokens beyond the need."""
        length = kv.shape[3]
        if self.storage is None or self.storage.shape[3] < length:
            shape = list(kv.shape)
            shape[3] = length + self.ROOM
            self.storage = None  # let the smaller one go first
            self.storage = kv.new_empty(shape)
        self.storage[:, :, :, :length] = kv
        self.ids, self.kv = list(ids), self.storage[:, :, :, :length]


@dataclass
class _Request:
    ids: list
    limit: int                 # max new tokens
    future: Future
    conversation: Conversation  # the episode's cache, updated when the reply is done


@dataclass
class _Row:
    request: _Request
    length: int                # tokens whose keys/values are in the row's slot
    tokens: list               # generated so far; the last one is not in the slot yet
    draft: int = 2             # tokens to draft next step (_draft): grows while drafts hold, shrinks when not
    prompt: list = field(default_factory=list)  # prompt tokens not in the slot yet: the next step prefills them
    new_prefix: bool = False   # an episode's first prompt, mostly new: kept for others once prefilled


def generation_rates(stats):
    """What an HFAgent's stats say per unit: generated tokens per second of generation and per step
    (a forward of all rows: decoding, and prefilling the prompts of rows just admitted), the cached
    tokens the decoding rows attended to over those they read (every row reads the cache's whole
    capacity, which follows the longest row), the share of drafted tokens greedy decoding kept, and
    the tokens the decoding rows fed over the queries their attention laid out (rows padded to the
    row with most new tokens)."""
    return {"tokens_per_s": stats["generated"] / max(1e-9, stats["busy_s"]),
            "tokens_per_step": stats["generated"] / max(1, stats["steps"]),
            "cache_read_efficiency": stats["cache_attended"] / max(1, stats["cache_read"]),
            "draft_acceptance": stats["accepted"] / max(1, stats["drafted"]),
            "query_efficiency": stats["fed"] / max(1, stats["queries"])}


class HFAgent(Agent):
    """A local checkpoint in-process, generating for all concurrent episodes at once.

    Worker threads render their conversation and queue it; one generation thread runs a
    continuous batch: each step advances every reply in flight by one token, or more where
    tokens drafted from the conversation are what greedy decoding picks (_draft), a finished
    reply frees its slot at once and a queued request takes it (the next step prefills its prompt
    in the same forward).
    The keys/values of each episode are kept across its turns, so a turn prefills only what is
    new (the last observation); an episode's first prompt reuses the cached instruction and
    examples of an earlier episode with the same prefix (same task type). Greedy by default; in
    fp32 the replies equal plain model.generate on the whole conversation (tests/test_agents.py).
    dtype "auto": bf16 on GPUs and on CPUs with bf16 units (AMX, AVX-512 BF16), else fp32; bf16
    replies differ from fp32 ones now and then (bench/eval_throughput.py counts how often). On a
    CPU the generation thread leaves a core to each worker busy with its env (_share_cores)."""
    kind = "hf"

    def __init__(self, model="", temperature=0.0, top_p=1.0, max_tokens=512, batch_size=16,
                 stop=(), dtype="auto", device="", prefix_cache=8, seed=0, draft=4, draft_ngram=3):
        import torch
        from agentune.attention import CACHED_GQA, register_cached_gqa
        from agentune.model import DEFAULT_MODEL, load_model, load_tokenizer, pack_cpu_linears
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            bf16 = device.startswith("cuda") or (device == "cpu" and cpu_has_bf16())
            dtype = "bfloat16" if bf16 else "float32"
        if dtype not in ("float32", "bfloat16", "float16"):
            raise SystemExit(f"--dtype={dtype}: expected auto, float32, bfloat16 or float16")
        self.dtype = getattr(torch, dtype)
        self.tokenizer = load_tokenizer(model)
        self.net = load_model(model, dtype=self.dtype, device=device).eval()
        if device == "cpu":
            pack_cpu_linears(self.net)
        register_cached_gqa()  # grouped-query attention over the slot cache without copying it
        self.attention = CACHED_GQA
        self.net.set_attn_implementation(self.attention)
        self.model = model or DEFAULT_MODEL
        # max_tokens is read at every reply: 05_eval.py sets it per task (the env's reply limit)
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        # its own random stream: torch's default one starts from the same seed in every process, so two
        # sampled passes (attempts) over the same tasks would draw the same replies
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.stop = [s for s in ([stop] if isinstance(stop, str) else stop) if s]
        self.batch_size, self.device, self.prefix_cache = batch_size, device, prefix_cache
        self.draft, self.draft_ngram = draft, draft_ngram  # prompt lookup: see _draft
        self.max_positions = getattr(self.net.config, "max_position_embeddings", None)
        # end of turn: the generation config's eos ids (ChatML: <|im_end|>) and the tokenizer's
        eos = self.net.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.stop_ids = sorted({*eos, self.tokenizer.eos_token_id} - {None})
        self.cache = SlotCache(self.net.config, self.dtype, device)
        self.prefixes = []    # Conversations of recent first prompts (least recently used first)
        # tokens prefilled / taken from cache / generated, steps (forwards), most rows in one step, seconds
        # spent generating, the cached tokens decoding rows attended to / read (the rows' capacity), the
        # tokens drafted / accepted by greedy decoding, and the tokens decoding rows fed / the queries their
        # attention laid out (every row as many as the row with the most new tokens), and the steps that
        # ran on fewer CPU threads than the agent started with, at least in part (_share_cores)
        self.stats = dict.fromkeys(("prefilled", "reused", "generated", "steps", "max_rows", "busy_s",
                                    "cache_attended", "cache_read", "drafted", "accepted", "fed", "queries",
                                    "fewer_threads_steps"), 0)
        self.episode = threading.local()
        # a fast tokenizer used from several threads can fail "Already borrowed"
        self.tokenizer_lock = threading.Lock()
        self.forward_lock = threading.Lock()  # reply_plain's reference runs between decode steps
        self.requests = queue.Queue()
        # worker threads busy outside generation (their env stepping or resetting, their tokenizer):
        # thread id -> since when; on a CPU the generation thread leaves each a core (_share_cores)
        self.outside = {}
        self.cpu_threads = self.threads_now = torch.get_num_threads()
        self.fewer_threads = False  # whether this step ran a layer on fewer threads
        if device == "cpu":  # the forwards run in the generation thread (see release_openmp_threads)
            release_openmp_threads()
        self.thread = threading.Thread(target=self._serve, name="hf-generate", daemon=True)
        self.thread.start()

    def describe(self):
        return {**super().describe(), "dtype": str(self.dtype).removeprefix("torch.")}

    def start_episode(self):
        self.episode.conversation = Conversation()  # drop the last episode's cache
        self.outside[threading.get_ident()] = time.perf_counter()  # its env resets next

    def encode(self, messages):
        text = self.tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in messages],
            tokenize=False, add_generation_prompt=True)
        with self.tokenizer_lock:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def reply(self, messages, env=None):
        ids = self.encode(messages)
        limit = max(1, int(self.sampling["max_tokens"]))
        if self.max_positions and len(ids) + limit > self.max_positions:
            raise ContextLimit(f"prompt of {len(ids)} tokens + max_tokens {limit} "
                               f"exceeds the model's {self.max_positions} positions")
        if not hasattr(self.episode, "conversation"):
            self.start_episode()
        future = Future()
        self.outside.pop(threading.get_ident(), None)
        self.requests.put(_Request(ids, limit, future, self.episode.conversation))
        try:
            return future.result()
        except Exception as e:
            raise LLMError(f"generation failed: {type(e).__name__}: {e}") from e
        finally:  # back to its env
            self.outside[threading.get_ident()] = time.perf_counter()

    def reply_plain(self, messages):
        """The reference the batched replies must equal: plain model.generate on the whole
        conversation, alone and re-prefilled (the hf agent before issue 10), greedy."""
        import torch
        ids = self.encode(messages)
        # transformers' own attention, as before issue 10 (the generation thread waits meanwhile)
        with self.forward_lock, torch.no_grad():
            self.net.set_attn_implementation("sdpa")
            try:
                out = self.net.generate(torch.tensor([ids], device=self.device),
                                        max_new_tokens=self.sampling["max_tokens"], do_sample=False,
                                        temperature=None, top_p=None, top_k=None,
                                        eos_token_id=self.stop_ids, pad_token_id=self.stop_ids[0])
            finally:
                self.net.set_attn_implementation(self.attention)
        row = out[0, len(ids):].tolist()
        stop = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
        usage = {"prompt_tokens": len(ids), "completion_tokens": min(stop + 1, len(row))}
        return Reply(self._text(row[:stop]), usage)

    def close(self):
        if self.thread.is_alive():
            self.requests.put(None)
            self.thread.join()

    # --- the generation thread

    def _serve(self):
        import torch

        from agentune.model import decoder_layers
        rows = []  # the replies in flight; rows[i] lives in slot i of the cache
        sharing = self.device == "cpu" and self.cpu_threads > 1
        hooks = [layer.register_forward_pre_hook(lambda *_: self._share_cores())
                 for layer in (decoder_layers(self.net) if sharing else [])]
        while True:
            start = time.perf_counter()
            while len(rows) < self.batch_size:  # fill free slots; wait only when idle
                try:
                    request = self.requests.get(block=not rows)
                except queue.Empty:
                    break
                if request is None:  # close()
                    for hook in hooks:
                        hook.remove()
                    if self.threads_now != self.cpu_threads:  # torch's count also seeds threads started later
                        torch.set_num_threads(self.cpu_threads)
                    return
                start = start if rows else time.perf_counter()  # waiting idle is not generating
                try:
                    rows.append(self._admit(request, slot=len(rows)))
                except Exception as e:  # the worker turns it into LLMError; this thread lives on
                    request.future.set_exception(e)
                    continue
                if rows[-1].new_prefix:  # requests sharing its prefix wait a step, then reuse it
                    break
            if not rows:
                continue
            try:
                self.fewer_threads = False
                self._step(rows)
                self.stats["fewer_threads_steps"] += self.fewer_threads
                for i in reversed(range(len(rows))):
                    if self._done(rows[i]):
                        self._finish(rows, i)
            except Exception as e:
                for row in rows:
                    if not row.request.future.done():
                        row.request.future.set_exception(e)
                rows = []
            self.stats["busy_s"] += time.perf_counter() - start

    def _share_cores(self):
        """Before each decoder layer of a step, on a CPU: the generation thread's OpenMP threads are
        those the agent started with, less one for each worker thread busy outside generation in the
        last OUTSIDE_S seconds (at least one). An OpenMP op splits its work evenly among its threads
        and waits for all of them, so a core taken by an env's reset or a tokenizer stalls every op:
        on this 2-core CPU a decode step (8 rows x 2,000 tokens, 4 drafted each) took 96 ms quiet,
        ~1,200 ms on two threads beside one busy process, 154 ms on one thread either way. A worker's
        mark expires after OUTSIDE_S, so a caller that never asks again holds no core."""
        import torch
        if threading.get_ident() != self.thread.ident:  # reply_plain's generate in another thread
            return
        now = time.perf_counter()
        busy = sum(now - since < OUTSIDE_S for since in list(self.outside.values()))
        threads = max(1, self.cpu_threads - busy)
        self.fewer_threads |= threads < self.cpu_threads
        if threads != self.threads_now:
            torch.set_num_threads(threads)  # OpenMP's count is per thread: this one's
            self.threads_now = threads

    def _forward(self, ids, positions, mask, keep, **attention):
        """The model over the cache: fp32 logits of the positions `keep` (a tensor of indices)."""
        import torch
        with self.forward_lock, torch.no_grad():
            out = self.net(input_ids=torch.tensor(ids, device=self.device), position_ids=positions,
                           attention_mask=mask, past_key_values=self.cache, use_cache=True,
                           logits_to_keep=keep, **attention)
        return out.logits.float()

    def _pick(self, logits):
        """The next token of each row: argmax (greedy), or a top-p sample."""
        import torch
        temperature, top_p = self.sampling["temperature"], self.sampling["top_p"]
        if temperature <= 0:
            return logits.argmax(-1).tolist()
        probs = torch.softmax(logits / temperature, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        sorted_probs[sorted_probs.cumsum(-1) - sorted_probs > top_p] = 0  # keep the top-p nucleus
        picked = torch.multinomial(sorted_probs, 1, generator=self.generator)
        return order.gather(-1, picked)[:, 0].tolist()

    def _admit(self, request, slot):
        """A row for the request in this slot, holding the longest cached prefix of its prompt (the
        episode's last turn, or another episode's first prompt); the next step prefills the rest."""
        ids, conversation = request.ids, request.conversation
        reused, source = 0, None
        for candidate in [conversation, *self.prefixes]:
            n = common_prefix(candidate.ids, ids) if candidate.kv is not None else 0
            if n > reused:
                reused, source = n, candidate
        reused = min(reused, len(ids) - 1)  # the last prompt token goes through the model
        self.cache.reserve(slot + 1, len(ids), used=slot)  # slots 0..slot-1 hold the rows in flight
        if reused:
            self.cache.buf[:, :, slot, :, :reused] = source.kv[:, :, :, :reused]
            if source in self.prefixes:  # most recently used last
                self.prefixes.remove(source)
                self.prefixes.append(source)
        self.stats["prefilled"] += len(ids) - reused
        self.stats["reused"] += reused
        # an episode's first prompt that is mostly new: keep it for the episodes that share it
        new_prefix = conversation.kv is None and bool(self.prefix_cache) and len(ids) - reused > len(ids) // 4
        return _Row(request, reused, [], prompt=ids[reused:], new_prefix=new_prefix)

    def _draft(self, row, room):
        """Up to `room` tokens the reply may go on with, for the step to check (prompt lookup decoding,
        as transformers' prompt_lookup_num_tokens): what followed the latest earlier occurrence of
        the conversation's last n tokens (n = draft_ngram, else fewer) with `room` tokens after it
        (else the latest). Agents repeat the names their observations list and their own earlier
        actions, where drafts hit. Greedy only: sampling would need rejection sampling to keep its
        distribution."""
        import numpy as np
        room = min(room, row.request.limit - len(row.tokens) - 1)
        if room <= 0 or self.sampling["temperature"] > 0:
            return []
        seq = np.asarray(row.request.ids + row.tokens)
        for n in range(min(self.draft_ngram, len(seq) - 1), 0, -1):
            found = np.ones(len(seq) - n, dtype=bool)  # where an earlier copy of the last n tokens starts
            for j in range(n):
                found &= seq[j:len(seq) - n + j] == seq[len(seq) - n + j]
            found = np.flatnonzero(found) + n  # where what followed it starts
            if len(found):  # the latest with `room` tokens after it (a run of one token has its own copy just behind)
                whole = found[found + room <= len(seq)]
                start = int(whole[-1] if len(whole) else found[-1])
                return seq[start:start + room].tolist()
        return []

    def _bias(self, lengths, span, width):
        """The additive mask of rows holding `lengths` tokens that feed up to `span` new ones: new token j
        of row i sees the cache up to its own position, lengths[i] + j (rows, 1, span, width)."""
        import torch
        last = lengths[:, None] + torch.arange(span, device=self.device)[None, :]
        hidden = torch.arange(width, device=self.device)[None, None, :] > last[:, :, None]
        bias = torch.zeros(hidden.shape, dtype=self.dtype, device=self.device)
        return bias.masked_fill_(hidden, float("-inf"))[:, None]

    def _step(self, rows):
        """One forward for every row, all rows' new tokens as one flat sequence. A decoding row feeds
        its last token and the tokens drafted after it (_draft) and keeps what greedy decoding picks:
        the drafted tokens up to the first it would not have picked, then its own pick; it thus gains
        one token or more a step, and its reply is the one decoding a token at a time would give. A
        row admitted since the last step (they come last) feeds its prompt's uncached tokens and gets
        its first token: prefills ride along with the decode step instead of a forward each (a forward
        costs ~0.1 s on a CPU whatever its few tokens)."""
        import torch
        decoding = sum(not row.prompt for row in rows)  # the first rows; the prefilling ones follow
        # a row's own draft length (row.draft) starts at 2, grows by 2 after a draft greedy decoding kept
        # whole, shrinks by 1 after one it did not (transformers' assisted-generation schedule), at most
        # `draft`: a checked token costs attention over the whole row. The attention lays out every row
        # as long as the longest, so shorter drafts go on to that length for the linears' price alone
        own = [min(self.draft, row.draft) for row in rows[:decoding]]
        fill = max(own, default=0)
        feeds = [[row.tokens[-1], *self._draft(row, fill)] for row in rows[:decoding]] + \
            [row.prompt for row in rows[decoding:]]
        row_of = torch.tensor([i for i, feed in enumerate(feeds) for _ in feed], device=self.device)
        col_of = torch.tensor([j for feed in feeds for j in range(len(feed))], device=self.device)
        lengths = torch.tensor([row.length for row in rows], device=self.device)
        positions = lengths[row_of] + col_of
        self.cache.fit(int(positions.max()) + 1, used=len(rows))
        width = self.cache.capacity  # the rows' whole capacity, read in place (see SlotCache)
        fed = sum(map(len, feeds[:decoding]))  # the decoding rows' tokens, first in the flat sequence

        def group(first, last, start, end):  # rows first..last-1, whose tokens are start..end-1 of the sequence
            span = max(map(len, feeds[first:last]))
            return (slice(first, last), slice(start, end), row_of[start:end] - first, col_of[start:end],
                    self._bias(lengths[first:last], span, width))
        # attention groups (see register_cached_gqa): the decoding rows, then each prefilling row alone;
        # logits for every decoding token and a prefilling row's last one
        groups, keep, end = [group(0, decoding, 0, fed)] if decoding else [], list(range(fed)), fed
        for i in range(decoding, len(rows)):
            start, end = end, end + len(feeds[i])
            groups.append(group(i, i + 1, start, end))
            keep.append(end - 1)
        self.cache.rows, self.cache.pos, self.cache.row_of = slice(0, len(rows)), positions, row_of
        self.cache.width = width
        keep = torch.tensor(keep, device=self.device)
        logits = self._forward([sum(feeds, [])], positions[None], groups[0][4], keep, groups=groups)
        picks = self._pick(logits[0])
        picks, first_tokens = picks[:fed], picks[fed:]
        for i, (row, feed) in enumerate(zip(rows, feeds)):
            if i >= decoding:  # prefilled: its first token
                row.length, row.tokens, row.prompt = row.length + len(feed), [first_tokens[i - decoding]], []
                if row.new_prefix:
                    ids = row.request.ids
                    self.prefixes.append(Conversation(ids, self.cache.buf[:, :, i, :, :len(ids)].clone()))
                    del self.prefixes[:-self.prefix_cache]
                continue
            picked, picks = picks[:len(feed)], picks[len(feed):]
            accepted = 0  # picked[j] follows feed[j]: drafted feed[j + 1] stands if it is picked[j]
            while accepted + 1 < len(feed) and feed[accepted + 1] == picked[accepted]:
                accepted += 1
            for token in picked[:accepted + 1]:
                row.tokens.append(token)
                row.length += 1  # the token before it is in the slot now
                if self._done(row):
                    break
            if len(feed) > 1:  # did its own draft hold?
                held = accepted >= min(own[i], len(feed) - 1)
                row.draft = min(self.draft, row.draft + 2) if held else max(1, row.draft - 1)
            self.stats["drafted"] += len(feed) - 1
            self.stats["accepted"] += accepted
        self.stats["steps"] += 1
        self.stats["max_rows"] = max(self.stats["max_rows"], len(rows))
        if decoding:  # the decode rates (generation_rates) count the decoding rows
            self.stats["cache_attended"] += int(lengths[:decoding].sum()) + fed
            self.stats["cache_read"] += decoding * width
            self.stats["fed"] += fed
            self.stats["queries"] += decoding * max(map(len, feeds[:decoding]))

    def _text(self, tokens):
        with self.tokenizer_lock:
            return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _done(self, row):
        tokens = row.tokens
        return tokens[-1] in self.stop_ids or len(tokens) >= row.request.limit or \
            bool(self.stop) and any(s in self._text(tokens) for s in self.stop)

    def _finish(self, rows, i):
        """Answer row i, keep its cache with its episode and move the last row into its slot."""
        row = rows[i]
        request = row.request
        request.conversation.keep((request.ids + row.tokens)[:row.length], self.cache.buf[:, :, i, :, :row.length])
        last = rows.pop()
        if i < len(rows):
            rows[i] = last
            self.cache.buf[:, :, i, :, :last.length] = self.cache.buf[:, :, len(rows), :, :last.length]
        tokens = row.tokens[:-1] if row.tokens[-1] in self.stop_ids else row.tokens
        text = self._text(tokens)
        for s in self.stop:  # a stop sequence ends the reply and is not part of it
            text = text.split(s)[0]
        self.stats["generated"] += len(row.tokens)
        request.future.set_result(Reply(text, {"prompt_tokens": len(request.ids),
                                               "completion_tokens": len(row.tokens)}))


def make_agent(kind, model="", base_url="", **options):
    """options: sampling (temperature, top_p, max_tokens) and the agent's own knobs (see its
    __init__). The expert takes none: it replays the reference solution."""
    if kind == "expert":
        return ExpertAgent()
    if kind == "openai":
        return OpenAIAgent(model, base_url, **options)
    if kind == "hf":
        return HFAgent(model, **options)
    if kind == "explorer":  # an honest teacher that searches from what it sees (agentune/explorer.py)
        from agentune.explorer import ExplorerAgent
        return ExplorerAgent(**options)
    raise SystemExit(f"unknown agent {kind!r}; known: expert, explorer, openai, hf")
