"""JSONL record I/O and conversions of common conversation formats to training messages.

Every error names ``file:line`` and says how to fix the input. Writers append one complete
line per record with a single write() and flush, so a killed process never leaves half a
record behind; readers ignore (and report) a torn last line without a newline.
"""
import glob
import json
import os


class DataError(SystemExit):
    """Bad input data: the message names the file, the line and the fix."""

    def __init__(self, where, message, fix=None):
        text = f"{where}: {message}" + (f"\n  fix: {fix}" if fix else "")
        super().__init__(text)
        self.where, self.message = where, message


def expand_paths(patterns):
    """Files matching a list (or comma-separated string) of paths/globs, in order, each once."""
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p]
    out = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise DataError(pattern, "no file matches this pattern", "check the path or glob")
        for path in matches:
            if os.path.isdir(path):
                path_list = sorted(glob.glob(os.path.join(path, "*.jsonl")))
                out += [p for p in path_list if p not in out]
            elif not os.path.exists(path):
                raise DataError(path, "file not found", "check the path")
            elif path not in out:
                out.append(path)
    return out


def read_jsonl(path):
    """Yield (where, record) for each line of a JSONL file; ``where`` is 'file:line'.

    A whole-file JSON array (as many public datasets ship) is accepted too.
    """
    with open(path, encoding="utf-8") as f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == "[":
            try:
                items = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{e.lineno}", f"invalid JSON array: {e.msg}",
                                "the file must be JSONL (one object per line) or one JSON array") from None
            for i, item in enumerate(items):
                yield f"{path}[{i}]", item
            return
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            if not line.endswith("\n"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    print(f"warning: {where}: ignoring a torn last line (the writer was killed mid-record)")
                    return
                yield where, record
                return
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(where, f"invalid JSON ({e.msg} at column {e.colno})",
                                "each line must be one complete JSON object") from None
            if not isinstance(record, dict):
                raise DataError(where, f"expected a JSON object, got {type(record).__name__}")
            yield where, record


def read_records(patterns):
    """Yield (where, record) over every file matching the given paths/globs."""
    for path in expand_paths(patterns):
        yield from read_jsonl(path)


class JsonlWriter:
    """Appends records to a JSONL file, one write() + flush per record (safe under kill -9)."""

    def __init__(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self.path = path
        self._repair_torn_tail(path)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @staticmethod
    def _repair_torn_tail(path):
        """Cut a last line left without its newline by a killed writer."""
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            return
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            content = f.read()
            cut = content.rfind(b"\n") + 1
            f.truncate(cut)
            print(f"warning: {path}: dropped a torn last line ({len(content) - cut} bytes) left by a killed writer")

    def write(self, record):
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        os.write(self.fd, line)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def upstream_report(data_file, name):
    """The report an earlier stage wrote next to its output (02: report.json, 03: mix_report.json),
    or None: how a value one stage fixed (seq_len, tokenizer) travels to the next."""
    path = os.path.join(os.path.dirname(os.path.abspath(data_file)), name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            report = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}", f"invalid JSON ({e.msg})", "rerun the stage that wrote it") from None
    return report if isinstance(report, dict) else None


def write_jsonl(path, records):
    """Write a whole file atomically (tmp + rename): for outputs that are produced at once."""
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Conversation formats -> training messages [{"role", "content", "loss"}]

SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    # tool calling (glaive / LLaMA-Factory ShareGPT): the call is the model's turn, the result is
    # what the environment answers; both map onto the plain chat roles every template knows
    "function_call": "assistant", "observation": "user", "function": "user", "tool": "user",
}
MESSAGE_ROLES = ("system", "user", "assistant")


def _check_turns(where, messages):
    if not messages:
        raise DataError(where, "the conversation has no turns", "remove the record or add its turns")
    for i, m in enumerate(messages):
        if not isinstance(m.get("content"), str):
            raise DataError(where, f"turn {i} has no text content", "every turn needs a string content")
        if m["role"] not in MESSAGE_ROLES:
            raise DataError(where, f"turn {i} has unknown role {m['role']!r}",
                            f"use one of {', '.join(MESSAGE_ROLES)}")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(where, "the conversation has no assistant turn", "a training record needs at least one")


TOOLS_PROMPT = ("You have access to the following functions. To call a function, reply with a JSON object "
                "{\"name\": <function name>, \"arguments\": <arguments object>}; its result comes back "
                "in the next message.\n\n")


def _tools_prompt(tools, where):
    """The system-prompt text that tells the model which functions it may call (the 'tools' of
    glaive/LLaMA-Factory ShareGPT, a JSON string, or an OpenAI-style list); '' when there are none."""
    if tools is None or tools == "":
        return ""
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as e:
            raise DataError(where, f"'tools' is not valid JSON ({e.msg})",
                            "give 'tools' as a JSON list of function specs (or a string of one)") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise DataError(where, "'tools' must be a list of function spec objects")
    if not tools:
        return ""
    return TOOLS_PROMPT + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)


def is_episode(record):
    """An episode record of 01_collect.py / 05_eval.py (not a training record)."""
    return "messages" in record and "env" in record and ("agent_messages" in record or "turns" in record)


def agent_message_indices(record, where):
    """Indices into record["messages"] of the replies the agent itself wrote in an episode.

    The rest of an episode's messages are the environment's: its prompt, observations, and the
    assistant turns of its one-shot example ("Ok.", the example's replies), which are identical in
    every episode and must never be trained or measured. 01_collect.py records the indices as
    `agent_messages`; records of older versions have only `turns`: the last `turns` assistant
    messages."""
    messages = record["messages"]
    if "agent_messages" in record:
        indices = record["agent_messages"]
        if not (isinstance(indices, list) and all(type(i) is int and 0 <= i < len(messages)
                                                  and isinstance(messages[i], dict)
                                                  and messages[i].get("role") == "assistant" for i in indices)):
            raise DataError(where, "'agent_messages' must list indices of assistant messages",
                            "the record is corrupt; collect the episode again")
        return list(indices)
    turns = record.get("turns", len(record.get("steps") or []))
    assistant = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"]
    if not isinstance(turns, int) or not 0 <= turns <= len(assistant):
        raise DataError(where, f"'turns' is {turns!r} but there are {len(assistant)} assistant messages",
                        "the record is corrupt; collect the episode again")
    return assistant[len(assistant) - turns:]


def _episode_messages(record, where):
    """An episode's messages with loss flags: true on the agent's own replies only."""
    agent = set(agent_message_indices(record, where))
    return [{"role": m.get("role"), "content": m.get("content"),
             "loss": (i in agent) if m.get("role") == "assistant" else None}
            for i, m in enumerate(record["messages"])]


def _loss_flag(value, role, where, i):
    """A per-turn loss flag: a JSON boolean or null, and true only on an assistant turn."""
    if value is not None and not isinstance(value, bool):
        raise DataError(where, f"turn {i}: 'loss' is {value!r}, not a JSON boolean",
                        'write "loss": true, false or null (a string such as "false" is not a flag)')
    if value is True and role != "assistant":
        raise DataError(where, f"turn {i}: 'loss' is true on a {role} turn",
                        "only assistant turns can be trained; set it to false or null")
    return value


def to_messages(record, where):
    """Convert one record (OpenAI messages, ShareGPT/AgentInstruct conversations, Alpaca, or an
    episode record of 01_collect.py) to a list of {"role", "content", "loss"} dicts. Assistant
    turns have loss=True unless the record says "loss": false (an episode: only the agent's own
    replies); other turns always have loss=False. A record's 'tools' (function specs, as
    glaive/LLaMA-Factory ShareGPT and OpenAI records carry them) go into the system turn."""
    if is_episode(record):
        if not isinstance(record["messages"], list):
            raise DataError(where, "'messages' must be a list of {role, content} objects")
        record = {"messages": _episode_messages(record, where)}
    if "messages" in record:
        raw = record["messages"]
        if not isinstance(raw, list):
            raise DataError(where, "'messages' must be a list of {role, content} objects")
        messages = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict) or "role" not in m:
                raise DataError(where, f"message {i} is not a {{role, content}} object")
            role = m["role"]
            if role == "tool":
                role = "user"
            content = m.get("content")
            if role == "assistant" and content is None and m.get("tool_calls"):
                content = json.dumps(m["tool_calls"], ensure_ascii=False)
            messages.append({"role": role, "content": content, "loss": _loss_flag(m.get("loss"), role, where, i)})
    elif "conversations" in record:
        raw = record["conversations"]
        if not isinstance(raw, list):
            raise DataError(where, "'conversations' must be a list of {from, value} objects")
        messages = []
        for i, turn in enumerate(raw):
            if not isinstance(turn, dict) or "from" not in turn:
                raise DataError(where, f"turn {i} is not a {{from, value}} object")
            role = SHAREGPT_ROLES.get(turn["from"])
            if role is None:
                raise DataError(where, f"turn {i} has unknown speaker {turn['from']!r}",
                                f"use one of {', '.join(SHAREGPT_ROLES)}")
            messages.append({"role": role, "content": turn.get("value"),
                             "loss": _loss_flag(turn.get("loss"), role, where, i)})
        if record.get("system") and messages and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": record["system"], "loss": None})
    elif "instruction" in record and "output" in record:
        prompt = record["instruction"] + (("\n\n" + record["input"]) if record.get("input") else "")
        messages = [{"role": "user", "content": prompt, "loss": None},
                    {"role": "assistant", "content": record["output"], "loss": None}]
        if record.get("system"):
            messages.insert(0, {"role": "system", "content": record["system"], "loss": None})
    else:
        raise DataError(where, f"unknown record format (keys: {', '.join(sorted(record)) or 'none'})",
                        "give 'messages' (role/content), 'conversations' (from/value) "
                        "or 'instruction'/'input'/'output'")
    tools_text = _tools_prompt(record.get("tools"), where)
    if tools_text:
        if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
            messages[0] = dict(messages[0], content=messages[0]["content"] + "\n\n" + tools_text)
        else:
            messages.insert(0, {"role": "system", "content": tools_text, "loss": None})
    # merge consecutive same-role turns (e.g. a function_call right after a gpt turn), since
    # most chat templates require alternation after the system turn
    merged = []
    for m in messages:
        if merged and merged[-1]["role"] == m["role"] and m["role"] != "system" \
                and isinstance(m["content"], str) and isinstance(merged[-1]["content"], str):
            merged[-1]["content"] += "\n" + m["content"]
            if m["loss"] is False:
                merged[-1]["loss"] = False
        else:
            merged.append(dict(m))
    _check_turns(where, merged)
    for m in merged:
        m["loss"] = m["role"] == "assistant" and m["loss"] is not False
    if not any(m["loss"] for m in merged):
        raise DataError(where, "no assistant turn is trained (all have \"loss\": false)",
                        "drop the record or set loss on at least one assistant turn")
    return merged
