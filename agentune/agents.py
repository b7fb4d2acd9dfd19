"""Agents: what answers the environment's prompt at each turn of an episode.

    agent = make_agent("openai", model="gpt-4", base_url="http://localhost:8000/v1", temperature=0)
    agent.start_episode()                      # resets the per-episode budget (the runner calls it)
    reply = agent.reply(messages, env)         # Reply(content, usage)

- expert: replays the task's reference solution (env.expert_reply()) through the real env.
- openai: any OpenAI-compatible chat endpoint (GPT-4, a vLLM server, ...), with bounded retries.
- hf: a local checkpoint in-process via transformers; concurrent episodes are batched together.

An agent is shared by all worker threads of a run, so per-episode state lives in a thread-local
(an episode runs start to end in one worker thread). Failures the runner must tell apart:
LLMError (the model side failed: endpoint down, retries exhausted, budget spent) and
ContextLimit (the conversation no longer fits the model's context window).
"""
import os
import queue
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

SAMPLING_KEYS = ("temperature", "top_p", "max_tokens")


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
                 timeout_s=120.0, max_retries=6, backoff_s=1.0, max_backoff_s=30.0,
                 max_calls=100, max_episode_tokens=1_000_000):
        import openai
        if not model:
            raise SystemExit("the openai agent needs --model (the model name the endpoint serves)")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL", "")
        api_key = os.environ.get("OPENAI_API_KEY", "")
        if not base_url and not api_key:
            raise SystemExit("the openai agent needs OPENAI_API_KEY (api.openai.com) or --base_url "
                             "(any OpenAI-compatible server, e.g. vLLM: http://host:8000/v1)")
        # local servers (vLLM, llama.cpp) accept any key but the client insists on one
        self.client = openai.OpenAI(api_key=api_key or "EMPTY", base_url=base_url or None,
                                    timeout=timeout_s, max_retries=0)  # we retry ourselves, visibly
        self.model, self.base_url = model, base_url
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.max_calls, self.max_episode_tokens = max_calls, max_episode_tokens
        self.episode = threading.local()
        self.openai = openai

    def start_episode(self):
        self.episode.calls, self.episode.tokens = 0, 0

    def _backoff(self, attempt, error):
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after and retry_after.replace(".", "", 1).isdigit():  # the server knows best
            delay = min(self.max_backoff_s, float(retry_after))
        time.sleep(delay)

    def reply(self, messages, env=None):
        if not hasattr(self.episode, "calls"):
            self.start_episode()
        calls, tokens = self.episode.calls, self.episode.tokens
        if calls >= self.max_calls or tokens >= self.max_episode_tokens:
            raise LLMError(f"episode budget spent: {calls} calls (max {self.max_calls}), "
                           f"{tokens} tokens (max {self.max_episode_tokens})")
        chat = [{"role": m["role"], "content": m["content"]} for m in messages]
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.chat.completions.create(model=self.model, messages=chat,
                                                               **self.sampling)
                break
            except self.openai.OpenAIError as e:
                status = getattr(e, "status_code", None)
                # what may pass: lost connections, timeouts, rate limits, server errors (the
                # statuses the openai client itself retries)
                transient = isinstance(e, self.openai.APIConnectionError) or status in (408, 409, 429) \
                    or (status or 0) >= 500
                if not transient:
                    if status and 400 <= status < 500 and _is_context_error(e):
                        raise ContextLimit(str(e)) from None
                    raise LLMError(f"{type(e).__name__}: {e}") from None  # auth, bad request, ...
                if attempt == self.max_retries:
                    raise LLMError(f"gave up after {attempt + 1} attempts: {type(e).__name__}: {e}") from None
                self._backoff(attempt, e)
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
# Local checkpoints (transformers), batched across the concurrent episodes of a run

class HFAgent(Agent):
    """Worker threads render their conversation and queue it; one generation thread takes what
    has queued up (up to batch_size, waiting batch_wait_s for stragglers), left-pads it into one
    batch and generates for all at once. Greedy by default (temperature 0)."""
    kind = "hf"

    def __init__(self, model="", temperature=0.0, top_p=1.0, max_tokens=512, batch_size=16,
                 batch_wait_s=0.05, device=""):
        import torch
        from agentune.model import DEFAULT_MODEL, load_model, load_tokenizer
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.tokenizer = load_tokenizer(model)
        self.net = load_model(model, dtype=dtype, device=device).eval()
        self.model = model or DEFAULT_MODEL
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.batch_size, self.batch_wait_s, self.device = batch_size, batch_wait_s, device
        self.max_positions = getattr(self.net.config, "max_position_embeddings", None)
        # end of turn: the generation config's eos ids (ChatML: <|im_end|>) and the tokenizer's
        eos = self.net.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.stop_ids = sorted({*eos, self.tokenizer.eos_token_id} - {None})
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.stop_ids[0]
        self.encode_lock = threading.Lock()
        self.requests = queue.Queue()
        self.thread = threading.Thread(target=self._serve, name="hf-generate", daemon=True)
        self.thread.start()

    def encode(self, messages):
        text = self.tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in messages],
            tokenize=False, add_generation_prompt=True)
        with self.encode_lock:  # a fast tokenizer used from several threads can fail "Already borrowed"
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def reply(self, messages, env=None):
        ids = self.encode(messages)
        budget = self.max_positions - self.sampling["max_tokens"] if self.max_positions else None
        if budget is not None and len(ids) > budget:
            raise ContextLimit(f"prompt of {len(ids)} tokens + max_tokens {self.sampling['max_tokens']} "
                               f"exceeds the model's {self.max_positions} positions")
        future = Future()
        self.requests.put((ids, future))
        try:
            return future.result()
        except Exception as e:
            raise LLMError(f"generation failed: {type(e).__name__}: {e}") from e

    def _take_batch(self):
        batch = [self.requests.get()]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_size:
            try:
                batch.append(self.requests.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _serve(self):
        while True:
            batch = self._take_batch()
            try:
                replies = self.generate([ids for ids, _ in batch])
            except Exception as e:  # the workers turn it into LLMError; this thread lives on
                for _, future in batch:
                    future.set_exception(e)
                continue
            for (_, future), reply in zip(batch, replies):
                future.set_result(reply)

    def generate(self, prompts):
        import torch
        width = max(map(len, prompts))
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        temperature = self.sampling["temperature"]
        sample = {"do_sample": True, "temperature": temperature, "top_p": self.sampling["top_p"]} \
            if temperature > 0 else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        with torch.no_grad():
            out = self.net.generate(input_ids=input_ids.to(self.device),
                                    attention_mask=attention_mask.to(self.device),
                                    max_new_tokens=self.sampling["max_tokens"],
                                    eos_token_id=self.stop_ids, pad_token_id=self.pad_id, **sample)
        replies = []
        for prompt, row in zip(prompts, out[:, width:].tolist()):
            # the row ends at the first end-of-turn token; after it come pad tokens
            stop = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
            text = self.tokenizer.decode(row[:stop], skip_special_tokens=True)
            usage = {"prompt_tokens": len(prompt), "completion_tokens": min(stop + 1, len(row))}
            replies.append(Reply(text, usage))
        return replies


def make_agent(kind, model="", base_url="", **options):
    """options: sampling (temperature, top_p, max_tokens) and the agent's own knobs (see its
    __init__). The expert takes none: it replays the reference solution."""
    if kind == "expert":
        return ExpertAgent()
    if kind == "openai":
        return OpenAIAgent(model, base_url, **options)
    if kind == "hf":
        return HFAgent(model, **options)
    raise SystemExit(f"unknown agent {kind!r}; known: expert, openai, hf")
